// The native CPU reference against the Python package on the fixtures make_fixtures.py wrote:
// preprocessing within 1e-5 (BGR, RGB and NV12 frames of several sizes), colour maps and uint16
// millimetres identical. Usage: test_python_parity FIXTURE_DIR
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.hpp"
#include "edgedepth/postprocess.hpp"
#include "edgedepth/preprocess.hpp"
#include "edgedepth/spec.hpp"

using nlohmann::json;

namespace {

std::string g_dir;

template <typename T>
std::vector<T> load(const std::string& name) {
  std::ifstream file(g_dir + "/" + name, std::ios::binary | std::ios::ate);
  if (!file) {
    edgedepth_test::fail(__FILE__, __LINE__, "cannot read fixture " + name);
    return {};
  }
  std::vector<T> data(static_cast<std::size_t>(file.tellg()) / sizeof(T));
  file.seekg(0);
  file.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(T)));
  return data;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < a.size(); ++i) worst = std::fmax(worst, std::fabs(double(a[i]) - double(b[i])));
  return worst;
}

void preprocess_matches(const json& c, double* worst) {
  const edgedepth::ModelSpec spec = edgedepth::ModelSpec::from_json(c["spec"].get<std::string>());
  const std::vector<std::uint8_t> frame = load<std::uint8_t>(c["input"]);
  const std::vector<float> expected = load<float>(c["expected"]);
  edgedepth::ImageView image;
  image.format = edgedepth::parse_pixel_format(c["order"]);
  image.width = c["width"];
  image.height = c["height"];
  image.data = frame.data();
  const std::vector<float> packed = edgedepth::preprocess_cpu(image, spec);
  const double error = max_abs_difference(packed, expected);
  *worst = std::fmax(*worst, error);
  std::printf("preprocess %s %dx%d -> %dx%d (%s model): max |native - python| = %.3g\n", c["order"].get<std::string>().c_str(),
              image.width, image.height, spec.width, spec.height, spec.color_order.c_str(), error);
  CHECK(error <= 1e-5);

  // The same frame with padded rows (and, for NV12, a separate UV plane) gives the same tensor.
  const std::size_t row = image.row_bytes(), padded = row + 64;
  const int rows = image.format == edgedepth::PixelFormat::NV12 ? image.height * 3 / 2 : image.height;
  std::vector<std::uint8_t> copy(padded * rows, 0xAB);
  for (int r = 0; r < rows; ++r) std::copy_n(frame.data() + r * row, row, copy.data() + r * padded);
  image.data = copy.data();
  image.stride = padded;
  if (image.format == edgedepth::PixelFormat::NV12) {
    image.uv = copy.data() + padded * image.height;
    image.uv_stride = padded;
  }
  CHECK(edgedepth::preprocess_cpu(image, spec) == packed);
}

void postprocess_matches(const json& c) {
  const int width = c["width"], height = c["height"];
  const std::size_t count = static_cast<std::size_t>(width) * height;
  const std::vector<float> depth = load<float>(c["depth"]);
  const std::vector<std::uint16_t> expected_mm = load<std::uint16_t>(c["millimetres"]);
  std::vector<std::uint16_t> mm(count);
  edgedepth::depth_to_millimetres_cpu(depth.data(), count, mm.data());
  std::size_t mm_diff = 0;
  for (std::size_t i = 0; i < count && expected_mm.size() == count; ++i) mm_diff += mm[i] != expected_mm[i];
  std::printf("millimetres %dx%d: %zu pixels differ from depth_to_png_mm\n", width, height, mm_diff);
  CHECK(expected_mm.size() == count && mm_diff == 0);
  for (const auto& item : c["colormaps"].items()) {
    const std::vector<std::uint8_t> expected = load<std::uint8_t>(item.value());
    std::vector<std::uint8_t> image(count * 3);
    edgedepth::colorize_cpu(depth.data(), height, width, c["min_depth"], c["max_depth"],
                            edgedepth::parse_colormap(item.key()), image.data());
    std::size_t diff = 0;
    for (std::size_t i = 0; i < image.size() && expected.size() == image.size(); ++i) diff += image[i] != expected[i];
    std::printf("colormap %s %dx%d [%g, %g]: %zu values differ from colorize_depth\n", item.key().c_str(), width,
                height, c["min_depth"].get<double>(), c["max_depth"].get<double>(), diff);
    CHECK(expected.size() == image.size() && diff == 0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: test_python_parity FIXTURE_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  const json manifest = json::parse(edgedepth_test::read_text(g_dir + "/manifest.json"));
  double worst = 0;
  for (const json& c : manifest["preprocess"]) preprocess_matches(c, &worst);
  for (const json& c : manifest["postprocess"]) postprocess_matches(c);
  std::printf("preprocess: %zu cases, largest difference %.3g (limit 1e-5)\n", manifest["preprocess"].size(), worst);
  CHECK(manifest["preprocess"].size() >= 100);
  return edgedepth_test::finish("test_python_parity");
}
