// Preprocessing, CPU reference: the per-pixel arithmetic lives in kernels_common.hpp, shared with
// the CUDA kernel.
#include "edgedepth/preprocess.hpp"

#include <cmath>

#include "edgedepth/errors.hpp"
#include "kernels_common.hpp"

namespace edgedepth {

PixelFormat parse_pixel_format(const std::string& name) {
  if (name == "BGR") return PixelFormat::BGR;
  if (name == "RGB") return PixelFormat::RGB;
  if (name == "NV12") return PixelFormat::NV12;
  throw Error("input order '" + name + "' is not supported: use 'BGR', 'RGB' or 'NV12'");
}

const char* pixel_format_name(PixelFormat format) {
  switch (format) {
    case PixelFormat::BGR: return "BGR";
    case PixelFormat::RGB: return "RGB";
    default: return "NV12";
  }
}

std::size_t ImageView::row_bytes() const {
  if (stride) return stride;
  return static_cast<std::size_t>(width) * (format == PixelFormat::NV12 ? 1 : 3);
}

std::size_t ImageView::uv_row_bytes() const { return uv_stride ? uv_stride : row_bytes(); }

const std::uint8_t* ImageView::uv_plane() const {
  return uv ? uv : data + row_bytes() * static_cast<std::size_t>(height);
}

void ImageView::check() const {
  const std::string size = std::to_string(width) + "x" + std::to_string(height);
  if (width <= 0 || height <= 0 || data == nullptr) {
    throw Error("expected a frame of at least 1x1 pixels with data, got " + size + (data ? "" : " and no data") +
                "; pass the frame's pixels and size");
  }
  const std::size_t packed = static_cast<std::size_t>(width) * (format == PixelFormat::NV12 ? 1 : 3);
  if (row_bytes() < packed) {
    throw Error("row stride " + std::to_string(row_bytes()) + " bytes is shorter than a " + pixel_format_name(format) +
                " row of " + std::to_string(packed) + " bytes; pass the stride in bytes (0 for packed rows)");
  }
  if (format == PixelFormat::NV12 && (width % 2 || height % 2)) {
    throw Error("NV12 frame " + size + " has an odd side; NV12 (4:2:0) frames have even width and height");
  }
  if (format == PixelFormat::NV12 && uv_row_bytes() < static_cast<std::size_t>(width)) {
    throw Error("NV12 UV stride " + std::to_string(uv_row_bytes()) + " bytes is shorter than a row of " +
                std::to_string(width) + " bytes; pass the UV plane's stride in bytes");
  }
}

ResizeAxis ResizeAxis::make(int source, int target, bool clamp_edges) {
  // cv::resize (imgproc/src/resize.cpp, resize()/resizeGeneric_): scale = 1/(target/source) in
  // double, the source coordinate (i + 0.5) * scale - 0.5 rounded to float, its floor and fraction,
  // weights saturate_cast<short>((1 - f) * 2048) and saturate_cast<short>(f * 2048) (round to even).
  ResizeAxis axis;
  axis.taps.resize(static_cast<std::size_t>(target));
  const double scale = 1.0 / (static_cast<double>(target) / source);
  for (int i = 0; i < target; ++i) {
    float f = static_cast<float>((i + 0.5) * scale - 0.5);
    int s = static_cast<int>(std::floor(f));
    f -= static_cast<float>(s);
    if (clamp_edges && s < 0) f = 0, s = 0;
    if (clamp_edges && s >= source - 1) f = 0, s = source - 1;
    ResizeTap& tap = axis.taps[static_cast<std::size_t>(i)];
    tap.first = kernels::clamp_int(s, 0, source - 1);
    tap.second = kernels::clamp_int(s + 1, 0, source - 1);
    tap.weight_first = static_cast<std::int32_t>(std::nearbyint((1.0f - f) * 2048.0f));
    tap.weight_second = static_cast<std::int32_t>(std::nearbyint(f * 2048.0f));
  }
  return axis;
}

void normalization_constants(const ModelSpec& spec, float scale[3], float offset[3]) {
  // numpy, float32: scale = 1.0 / (255.0 * std), offset = -mean / std.
  for (int c = 0; c < 3; ++c) {
    const float std_c = static_cast<float>(spec.std[c]);
    const float mean_c = static_cast<float>(spec.mean[c]);
    const float scaled_std = 255.0f * std_c;
    scale[c] = 1.0f / scaled_std;
    offset[c] = -mean_c / std_c;
  }
}

PreprocessPlan PreprocessPlan::make(const ModelSpec& spec, int source_width, int source_height, PixelFormat format) {
  spec.validate();
  if (source_width <= 0 || source_height <= 0) {
    throw Error("source frame " + std::to_string(source_width) + "x" + std::to_string(source_height) +
                " is empty; pass a frame of at least 1x1 pixels");
  }
  PreprocessPlan plan;
  plan.source_width = source_width;
  plan.source_height = source_height;
  plan.width = spec.width;
  plan.height = spec.height;
  const char* source_order = format == PixelFormat::RGB ? "RGB" : "BGR";  // NV12 decodes to BGR
  plan.swap_channels = spec.color_order != source_order;
  normalization_constants(spec, plan.scale, plan.offset);
  plan.x = ResizeAxis::make(source_width, spec.width, true);
  plan.y = ResizeAxis::make(source_height, spec.height, false);
  return plan;
}

namespace {

kernels::Source source_of(const ImageView& image) {
  return {image.data, image.row_bytes(), image.format == PixelFormat::NV12 ? image.uv_plane() : nullptr,
          image.uv_row_bytes(), image.format == PixelFormat::NV12};
}

kernels::Tap tap_of(const ResizeTap& t) { return {t.first, t.second, t.weight_first, t.weight_second}; }

}  // namespace

void preprocess_cpu(const ImageView& image, const PreprocessPlan& plan, float* out) {
  image.check();
  if (image.width != plan.source_width || image.height != plan.source_height) {
    throw Error("frame is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                " but the preprocessing plan was made for " + std::to_string(plan.source_width) + "x" +
                std::to_string(plan.source_height) + "; make a plan for this frame size");
  }
  const kernels::Source source = source_of(image);
  const std::size_t plane = static_cast<std::size_t>(plan.width) * plan.height;
  for (int v = 0; v < plan.height; ++v) {
    const kernels::Tap ty = tap_of(plan.y.taps[static_cast<std::size_t>(v)]);
    for (int u = 0; u < plan.width; ++u) {
      float* pixel = out + static_cast<std::size_t>(v) * plan.width + u;
      kernels::preprocess_pixel(source, tap_of(plan.x.taps[static_cast<std::size_t>(u)]), ty, plan.swap_channels,
                                plan.scale, plan.offset, pixel, plane);
    }
  }
}

void preprocess_cpu(const ImageView& image, const ModelSpec& spec, float* out) {
  image.check();
  preprocess_cpu(image, PreprocessPlan::make(spec, image.width, image.height, image.format), out);
}

std::vector<float> preprocess_cpu(const ImageView& image, const ModelSpec& spec) {
  std::vector<float> out(3 * static_cast<std::size_t>(spec.width) * static_cast<std::size_t>(spec.height));
  preprocess_cpu(image, spec, out.data());
  return out;
}

void nv12_to_bgr_cpu(const ImageView& image, std::uint8_t* bgr) {
  image.check();
  if (image.format != PixelFormat::NV12) throw Error("nv12_to_bgr_cpu takes an NV12 frame, got " + std::string(pixel_format_name(image.format)));
  const kernels::Source source = source_of(image);
  for (int y = 0; y < image.height; ++y) {
    for (int x = 0; x < image.width; ++x) {
      int pixel[3];
      kernels::load_pixel(source, x, y, pixel);
      std::uint8_t* out = bgr + (static_cast<std::size_t>(y) * image.width + x) * 3;
      for (int c = 0; c < 3; ++c) out[c] = static_cast<std::uint8_t>(pixel[c]);
    }
  }
}

}  // namespace edgedepth
