// Postprocessing without Python: the point cloud against the pinhole formula, millimetre rounding
// and clipping, colour-map ends, and the refusals.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "check.hpp"
#include "edgedepth/errors.hpp"
#include "edgedepth/postprocess.hpp"

namespace ed = edgedepth;

namespace {

void point_cloud_is_the_pinhole_model() {
  const int width = 64, height = 48;
  const ed::Intrinsics k{525.0f, 520.5f, 31.5f, 23.25f};
  std::mt19937 rng(15);
  std::uniform_real_distribution<float> metres(0.05f, 80.0f);
  std::vector<float> depth(width * height), xyz(3 * width * height);
  for (float& d : depth) d = metres(rng);
  depth[5] = std::numeric_limits<float>::quiet_NaN();
  depth[6] = 0.0f;
  depth[7] = -1.0f;
  depth[8] = std::numeric_limits<float>::infinity();
  ed::depth_to_points_cpu(depth.data(), height, width, k, xyz.data());
  double worst = 0;
  for (int v = 0; v < height; ++v) {
    for (int u = 0; u < width; ++u) {
      const std::size_t i = static_cast<std::size_t>(v) * width + u;
      const float* p = &xyz[3 * i];
      if (i >= 5 && i <= 8) {
        CHECK(std::isnan(p[0]) && std::isnan(p[1]) && std::isnan(p[2]));
        continue;
      }
      const double z = depth[i];
      const double x = (u - double(k.cx)) * z / k.fx, y = (v - double(k.cy)) * z / k.fy;
      CHECK_EQ(p[2], depth[i]);
      worst = std::fmax(worst, std::fabs(p[0] - x) / std::fmax(1.0, std::fabs(x)));
      worst = std::fmax(worst, std::fabs(p[1] - y) / std::fmax(1.0, std::fabs(y)));
      // A point projects back onto its own pixel.
      CHECK(std::fabs(k.fx * p[0] / p[2] + k.cx - u) < 1e-3 && std::fabs(k.fy * p[1] / p[2] + k.cy - v) < 1e-3);
    }
  }
  std::printf("point cloud: largest relative difference from the double-precision formula %.3g\n", worst);
  CHECK(worst < 1e-6);
  CHECK_THROWS(ed::Error, ed::depth_to_points_cpu(depth.data(), 1, 1, ed::Intrinsics{0, 1, 0, 0}, xyz.data()),
               "camera intrinsics fx=0.0");
}

void millimetres_round_and_clip() {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> depth = {1.0f, 0.0125f, 0.0005f, 0.0015f, -0.3f, 65.535f, 65.536f, 100.0f,
                                    std::numeric_limits<float>::quiet_NaN(), inf, -inf, 2.0004f};
  std::vector<std::uint16_t> mm(depth.size());
  ed::depth_to_millimetres_cpu(depth.data(), depth.size(), mm.data());
  // float 0.0125 is 12.50000019 mm, 0.0005 is 0.50000002 mm, 0.0015 is 1.50000001 mm (rounded in double).
  const std::vector<std::uint16_t> expected = {1000, 13, 1, 2, 0, 65535, 65535, 65535, 0, 0, 0, 2000};
  for (std::size_t i = 0; i < depth.size(); ++i) CHECK_EQ(mm[i], expected[i]);
}

void colour_map_ends() {
  // min -> the top of the map (near is warm), max -> level 0, outside the range clipped, NaN black.
  const std::vector<float> depth = {0.1f, 10.0f, -5.0f, 50.0f, std::numeric_limits<float>::quiet_NaN()};
  std::vector<std::uint8_t> bgr(depth.size() * 3);
  for (int map = 0; map < 5; ++map) {
    const auto colormap = static_cast<ed::Colormap>(map);
    ed::colorize_cpu(depth.data(), 1, 5, 0.1, 10.0, colormap, bgr.data());
    const std::uint8_t* lut = ed::colormap_lut(colormap);
    for (int c = 0; c < 3; ++c) {
      CHECK_EQ(int(bgr[c]), int(lut[255 * 3 + c]));
      CHECK_EQ(int(bgr[3 + c]), int(lut[c]));
      CHECK_EQ(int(bgr[6 + c]), int(lut[255 * 3 + c]));
      CHECK_EQ(int(bgr[9 + c]), int(lut[c]));
      CHECK_EQ(int(bgr[12 + c]), 0);
    }
  }
  CHECK(ed::parse_colormap("viridis") == ed::Colormap::Viridis);
  CHECK_EQ(std::string(ed::colormap_name(ed::Colormap::Gray)), "gray");
  CHECK_EQ(int(ed::colormap_lut(ed::Colormap::Gray)[3 * 77 + 1]), 77);
  CHECK_THROWS(ed::Error, ed::parse_colormap("jet"),
               "colormap 'jet' is unknown; choose one of turbo, inferno, magma, viridis, gray");
  CHECK_THROWS(ed::Error, ed::colorize_cpu(depth.data(), 1, 1, 5.0, 5.0, ed::Colormap::Turbo, bgr.data()),
               "depth range [5.0, 5.0] is empty; pass MIN < MAX");
}

}  // namespace

int main() {
  point_cloud_is_the_pinhole_model();
  millimetres_round_and_clip();
  colour_map_ends();
  return edgedepth_test::finish("test_postprocess");
}
