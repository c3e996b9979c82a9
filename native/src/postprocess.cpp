// Postprocessing, CPU reference: the per-pixel arithmetic lives in kernels_common.hpp, shared with
// the CUDA kernels; the colour tables are generated from Python (colormap_luts.hpp).
#include "edgedepth/postprocess.hpp"

#include <cmath>

#include "colormap_luts.hpp"
#include "edgedepth/errors.hpp"
#include "json_util.hpp"
#include "kernels_common.hpp"

namespace edgedepth {

namespace {

constexpr std::uint8_t kLut[EDGEDEPTH_COLORMAP_COUNT][256][3] = EDGEDEPTH_COLORMAP_LUT_INIT;
const char* const kNames[EDGEDEPTH_COLORMAP_COUNT] = {"turbo", "inferno", "magma", "viridis", "gray"};

/// Python's str() of a float, so messages read as edgedepth.colormap's.
std::string number(double value) { return detail::py_repr(detail::Json(value)); }

}  // namespace

Colormap parse_colormap(const std::string& name) {
  for (int i = 0; i < EDGEDEPTH_COLORMAP_COUNT; ++i) {
    if (name == kNames[i]) return static_cast<Colormap>(i);
  }
  throw Error("colormap '" + name + "' is unknown; choose one of turbo, inferno, magma, viridis, gray");
}

const char* colormap_name(Colormap colormap) { return kNames[static_cast<int>(colormap)]; }

const std::uint8_t* colormap_lut(Colormap colormap) { return &kLut[static_cast<int>(colormap)][0][0]; }

void check_depth_range(double min_depth, double max_depth) {
  if (!(max_depth > min_depth)) {
    throw Error("depth range [" + number(min_depth) + ", " + number(max_depth) + "] is empty; pass MIN < MAX");
  }
}

void colorize_cpu(const float* depth, int height, int width, double min_depth, double max_depth, Colormap colormap,
                  std::uint8_t* bgr) {
  check_depth_range(min_depth, max_depth);
  // numpy: the float32 array meets Python floats, which become float32 (max) and, for the
  // denominator, the double difference rounded to float32.
  const float max_f = static_cast<float>(max_depth);
  const float range = static_cast<float>(max_depth - min_depth);
  const std::uint8_t* lut = colormap_lut(colormap);
  const std::size_t count = static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
  for (std::size_t i = 0; i < count; ++i) {
    std::uint8_t* out = bgr + 3 * i;
    if (!std::isfinite(depth[i])) {
      out[0] = out[1] = out[2] = 0;
      continue;
    }
    const std::uint8_t* colour = lut + 3 * kernels::colormap_level(depth[i], max_f, range);
    out[0] = colour[0];
    out[1] = colour[1];
    out[2] = colour[2];
  }
}

void depth_to_millimetres_cpu(const float* depth, std::size_t count, std::uint16_t* millimetres) {
  for (std::size_t i = 0; i < count; ++i) millimetres[i] = kernels::depth_to_millimetres(depth[i]);
}

void Intrinsics::check() const {
  const bool ok = std::isfinite(fx) && std::isfinite(fy) && std::isfinite(cx) && std::isfinite(cy) && fx != 0 &&
                  fy != 0;
  if (!ok) {
    throw Error("camera intrinsics fx=" + number(fx) + " fy=" + number(fy) + " cx=" + number(cx) + " cy=" +
                number(cy) + " are unusable: expected finite values with fx, fy non-zero (pixels)");
  }
}

void depth_to_points_cpu(const float* depth, int height, int width, const Intrinsics& intrinsics, float* xyz) {
  intrinsics.check();
  for (int v = 0; v < height; ++v) {
    for (int u = 0; u < width; ++u) {
      const std::size_t i = static_cast<std::size_t>(v) * width + u;
      kernels::pinhole_point(depth[i], u, v, intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy, xyz + 3 * i);
    }
  }
}

}  // namespace edgedepth
