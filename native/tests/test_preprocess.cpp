// Preprocessing without Python: OpenCV's resize tables, NV12 decoding of known colours, the
// normalisation constants, and the refusals. Agreement with the Python package itself is
// test_python_parity's job.
#include <cmath>
#include <cstdint>
#include <vector>

#include "check.hpp"
#include "edgedepth/errors.hpp"
#include "edgedepth/preprocess.hpp"

namespace ed = edgedepth;

namespace {

ed::ModelSpec spec_of(int height, int width, const char* order) {
  ed::ModelSpec spec;
  spec.height = height;
  spec.width = width;
  spec.color_order = order;
  return spec;
}

void resize_tables() {
  // 640 -> 320: source x = 2i + 0.5, taps (2i, 2i+1) with equal weights.
  const ed::ResizeAxis half = ed::ResizeAxis::make(640, 320, true);
  CHECK_EQ(half.taps[10].first, 20);
  CHECK_EQ(half.taps[10].second, 21);
  CHECK_EQ(half.taps[10].weight_first, 1024);
  CHECK_EQ(half.taps[10].weight_second, 1024);
  // Upscale 2 -> 8: output 0 sits at source -0.375; x clamps it to (0, 2048), y keeps the fraction.
  const ed::ResizeAxis x = ed::ResizeAxis::make(2, 8, true), y = ed::ResizeAxis::make(2, 8, false);
  CHECK_EQ(x.taps[0].first, 0);
  CHECK_EQ(x.taps[0].weight_first, 2048);
  CHECK_EQ(x.taps[0].weight_second, 0);
  CHECK_EQ(y.taps[0].first, 0);
  CHECK_EQ(y.taps[0].second, 0);
  CHECK_EQ(y.taps[0].weight_first, 768);  // 1 - 0.625
  CHECK_EQ(y.taps[0].weight_second, 1280);
  CHECK_EQ(x.taps[7].first, 1);
  CHECK_EQ(x.taps[7].weight_first, 2048);
  for (const auto& tap : ed::ResizeAxis::make(1080, 384, false).taps) CHECK_EQ(tap.weight_first + tap.weight_second, 2048);
}

void same_size_is_normalisation_only() {
  const ed::ModelSpec spec = spec_of(32, 64, "RGB");
  std::vector<std::uint8_t> frame(32 * 64 * 3);
  for (std::size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<std::uint8_t>(i * 7 + 3);
  ed::ImageView image{ed::PixelFormat::BGR, 64, 32, frame.data()};
  const std::vector<float> out = ed::preprocess_cpu(image, spec);
  float scale[3], offset[3];
  ed::normalization_constants(spec, scale, offset);
  CHECK(std::fabs(scale[0] - 1.0f / (255.0f * 0.229f)) < 1e-9f);
  CHECK(std::fabs(offset[2] + 0.406f / 0.225f) < 1e-6f);
  const std::size_t plane = 32 * 64;
  for (std::size_t p = 0; p < plane; ++p) {
    for (int c = 0; c < 3; ++c) {
      const float pixel = frame[3 * p + (2 - c)];  // BGR frame, RGB model
      CHECK_EQ(out[c * plane + p], pixel * scale[c] + offset[c]);
    }
  }
}

void nv12_known_colours() {
  // BT.601 limited range: Y=16 is black, Y=235 white (neutral chroma), (Y, U, V) = (81, 90, 240) red.
  const int width = 6, height = 2;
  std::vector<std::uint8_t> nv12 = {16, 16, 235, 235, 81, 81,  // Y, row 0
                                    16, 16, 235, 235, 81, 81,  // Y, row 1
                                    128, 128, 128, 128, 90, 240};  // one U, V pair per 2x2 block
  ed::ImageView image{ed::PixelFormat::NV12, width, height, nv12.data()};
  std::vector<std::uint8_t> bgr(width * height * 3);
  ed::nv12_to_bgr_cpu(image, bgr.data());
  for (int row = 0; row < height; ++row) {
    const std::uint8_t* p = &bgr[3 * width * row];
    CHECK(p[0] == 0 && p[1] == 0 && p[2] == 0 && p[3] == 0);
    CHECK(p[6] == 255 && p[7] == 255 && p[8] == 255 && p[11] == 255);
    CHECK(p[12] < 2 && p[13] < 2 && p[14] > 250);
  }
}

void refusals() {
  const ed::ModelSpec spec = spec_of(32, 32, "RGB");
  std::vector<std::uint8_t> frame(64 * 64 * 3);
  CHECK_THROWS(ed::Error, ed::parse_pixel_format("YUYV"), "input order 'YUYV' is not supported: use 'BGR', 'RGB' or 'NV12'");
  CHECK_THROWS(ed::Error, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::NV12, 63, 64, frame.data()}, spec),
               "NV12 frame 63x64 has an odd side");
  CHECK_THROWS(ed::Error, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::BGR, 64, 64, frame.data(), 100}, spec),
               "row stride 100 bytes is shorter than a BGR row of 192 bytes");
  CHECK_THROWS(ed::Error, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::BGR, 0, 64, frame.data()}, spec),
               "expected a frame of at least 1x1 pixels");
  CHECK_THROWS(ed::Error, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::RGB, 64, 64, nullptr}, spec), "and no data");
  const ed::PreprocessPlan plan = ed::PreprocessPlan::make(spec, 64, 64, ed::PixelFormat::BGR);
  std::vector<float> out(3 * 32 * 32);
  CHECK_THROWS(ed::Error, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::BGR, 32, 64, frame.data()}, plan, out.data()),
               "but the preprocessing plan was made for 64x64");
  ed::ModelSpec bad = spec;
  bad.width = 33;
  CHECK_THROWS(ed::SpecError, ed::preprocess_cpu(ed::ImageView{ed::PixelFormat::BGR, 64, 64, frame.data()}, bad),
               "input width 33 is not a multiple of 32");
}

}  // namespace

int main() {
  resize_tables();
  same_size_is_normalisation_only();
  nv12_known_colours();
  refusals();
  return edgedepth_test::finish("test_preprocess");
}
