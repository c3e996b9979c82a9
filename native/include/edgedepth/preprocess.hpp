// Preprocessing: one camera frame (uint8 BGR, RGB or NV12) -> the network input (float32 NCHW),
// exactly as edgedepth.preprocess.preprocess does it (cv2.resize INTER_LINEAR, colour order,
// (x/255 - mean)/std). See docs/NATIVE.md for the resize convention.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "edgedepth/spec.hpp"

namespace edgedepth {

enum class PixelFormat {
  BGR,   ///< HxWx3 uint8, OpenCV capture order
  RGB,   ///< HxWx3 uint8, dataset order
  NV12,  ///< Y plane (HxW) + interleaved UV plane (H/2 x W/2 pairs), BT.601 limited range, as Jetson cameras give
};

/// "BGR", "RGB" or "NV12"; Error naming the accepted ones otherwise.
PixelFormat parse_pixel_format(const std::string& name);
const char* pixel_format_name(PixelFormat format);

/// A frame in host or device memory; strides are in bytes. NV12 needs even width and height.
struct ImageView {
  PixelFormat format = PixelFormat::BGR;
  int width = 0;
  int height = 0;
  const std::uint8_t* data = nullptr;  ///< BGR/RGB pixels, or NV12's Y plane
  std::size_t stride = 0;              ///< bytes per row of `data`; 0 means packed (3*width or width)
  const std::uint8_t* uv = nullptr;    ///< NV12 only: the UV plane; nullptr means right after the Y plane
  std::size_t uv_stride = 0;           ///< NV12 only: bytes per UV row; 0 means `stride`

  std::size_t row_bytes() const;
  std::size_t uv_row_bytes() const;
  const std::uint8_t* uv_plane() const;
  /// Error unless the sizes, pointers and strides describe a usable frame.
  void check() const;
};

/// One output index of OpenCV's fixed-point INTER_LINEAR (cv::resize, uint8, 11 fractional bits):
/// it reads source indices `first` and `second` with weights that sum to 2048.
struct ResizeTap {
  std::int32_t first;
  std::int32_t second;
  std::int32_t weight_first;
  std::int32_t weight_second;
};

/// The taps of one axis.
struct ResizeAxis {
  std::vector<ResizeTap> taps;
  /// `clamp_edges`: OpenCV clamps the x axis' out-of-range taps to weights (2048, 0) but keeps the
  /// y axis' fractional weights and clamps only the row index.
  static ResizeAxis make(int source, int target, bool clamp_edges);
};

/// Everything the per-pixel work needs, fixed by the spec and the source size.
struct PreprocessPlan {
  int source_width = 0;
  int source_height = 0;
  int width = 0;   ///< network input width
  int height = 0;  ///< network input height
  bool swap_channels = false;  ///< output channel c reads source channel 2-c (BGR <-> RGB)
  float scale[3] = {1, 1, 1};  ///< per output channel: value = pixel * scale + offset
  float offset[3] = {0, 0, 0};
  ResizeAxis x;
  ResizeAxis y;

  static PreprocessPlan make(const ModelSpec& spec, int source_width, int source_height, PixelFormat format);
};

/// (scale, offset) per output channel so that pixel * scale + offset == (pixel/255 - mean)/std,
/// computed in float32 as edgedepth.preprocess.normalization_constants does.
void normalization_constants(const ModelSpec& spec, float scale[3], float offset[3]);

/// Frame -> 3 x spec.height x spec.width float32 (planar, the spec's colour order) at `out`.
void preprocess_cpu(const ImageView& image, const ModelSpec& spec, float* out);
std::vector<float> preprocess_cpu(const ImageView& image, const ModelSpec& spec);
/// The same with a plan made once per source size (no allocation).
void preprocess_cpu(const ImageView& image, const PreprocessPlan& plan, float* out);

/// NV12 -> packed BGR exactly as cv2.cvtColor(COLOR_YUV2BGR_NV12) (BT.601 limited range, 20-bit fixed point).
void nv12_to_bgr_cpu(const ImageView& image, std::uint8_t* bgr);

}  // namespace edgedepth
