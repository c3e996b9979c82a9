// Postprocessing of a depth map in metres (float32 HxW): colour map, uint16 millimetres and an
// organised point cloud, matching edgedepth.colormap.colorize_depth and the --save-depth PNG writer
// (edgedepth.runtime.sinks.depth_to_png_mm).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace edgedepth {

/// The colour maps of edgedepth.colormap.COLORMAPS, in that order.
enum class Colormap { Turbo = 0, Inferno = 1, Magma = 2, Viridis = 3, Gray = 4 };

/// "turbo", "inferno", "magma", "viridis" or "gray"; Error with Python's wording otherwise.
Colormap parse_colormap(const std::string& name);
const char* colormap_name(Colormap colormap);
/// The 256 BGR entries of a map (generated from Python: native/src/colormap_luts.hpp).
const std::uint8_t* colormap_lut(Colormap colormap);

/// Error unless min_depth < max_depth (colorize_depth's check).
void check_depth_range(double min_depth, double max_depth);

/// HxW metres -> HxWx3 uint8 BGR; near is the top of the map, non-finite pixels are black.
void colorize_cpu(const float* depth, int height, int width, double min_depth, double max_depth, Colormap colormap,
                  std::uint8_t* bgr);

/// Metres -> uint16 millimetres: rint(depth * 1000) in double (ties to even), NaN/inf/negative -> 0,
/// beyond 65.535 m -> 65535.
void depth_to_millimetres_cpu(const float* depth, std::size_t count, std::uint16_t* millimetres);

/// Pinhole camera intrinsics in pixels of the depth map.
struct Intrinsics {
  float fx = 0;
  float fy = 0;
  float cx = 0;
  float cy = 0;
  /// Error unless fx and fy are finite and non-zero and cx, cy finite.
  void check() const;
};

/// HxW metres -> HxWx3 float32 organised cloud: x = (u-cx)*z/fx, y = (v-cy)*z/fy, z = depth;
/// pixels without depth (non-finite or <= 0) become (NaN, NaN, NaN), as ROS organised clouds do.
void depth_to_points_cpu(const float* depth, int height, int width, const Intrinsics& intrinsics, float* xyz);

}  // namespace edgedepth
