// Internal: the per-pixel arithmetic shared by the CPU references and the CUDA kernels, so both
// tiers compute bit-identical results. Every float operation is a separate, correctly rounded step
// (CUDA: __f*_rn intrinsics, which are never fused; host: -ffp-contract=off), in the same order as
// the numpy code it mirrors.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define EDGEDEPTH_HD __host__ __device__ __forceinline__
#else
#define EDGEDEPTH_HD inline
#endif

namespace edgedepth {
namespace kernels {

using std::isfinite;
using std::nanf;
using std::rint;

EDGEDEPTH_HD float fmul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
EDGEDEPTH_HD float fadd(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
EDGEDEPTH_HD float fsub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
EDGEDEPTH_HD float fdiv(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
EDGEDEPTH_HD double dmul(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

EDGEDEPTH_HD int clamp_int(int value, int low, int high) { return value < low ? low : (value > high ? high : value); }

/// cv::cvtColor COLOR_YUV2BGR_NV12 for one pixel: BT.601 limited range in 20-bit fixed point
/// (OpenCV imgproc color_yuv.simd.hpp, ITUR_BT_601_* constants).
EDGEDEPTH_HD void yuv_to_bgr(int luma, int u, int v, int bgr[3]) {
  constexpr int kShift = 20, kCY = 1220542, kCUB = 2116026, kCUG = -409993, kCVG = -852492, kCVR = 1673527;
  const int y = (luma > 16 ? luma - 16 : 0) * kCY;
  const int round = 1 << (kShift - 1);
  u -= 128;
  v -= 128;
  bgr[0] = clamp_int((y + round + kCUB * u) >> kShift, 0, 255);
  bgr[1] = clamp_int((y + round + kCVG * v + kCUG * u) >> kShift, 0, 255);
  bgr[2] = clamp_int((y + round + kCVR * v) >> kShift, 0, 255);
}

/// A frame's planes as the per-pixel code reads them (host or device pointers).
struct Source {
  const std::uint8_t* data;
  std::size_t stride;
  const std::uint8_t* uv;
  std::size_t uv_stride;
  bool nv12;
};

/// The three channels of source pixel (x, y) in the frame's order (BGR for NV12).
EDGEDEPTH_HD void load_pixel(const Source& source, int x, int y, int out[3]) {
  if (source.nv12) {
    const std::uint8_t* uv = source.uv + static_cast<std::size_t>(y >> 1) * source.uv_stride + (x & ~1);
    yuv_to_bgr(source.data[static_cast<std::size_t>(y) * source.stride + x], uv[0], uv[1], out);
    return;
  }
  const std::uint8_t* p = source.data + static_cast<std::size_t>(y) * source.stride + 3 * static_cast<std::size_t>(x);
  out[0] = p[0];
  out[1] = p[1];
  out[2] = p[2];
}

/// The vertical step of cv::resize INTER_LINEAR for uint8 as every SIMD build computes it
/// (VResizeLinearVec_32s8u: rows shifted right by 4, 16-bit multiply-high, then a rounding shift
/// by 2). The plain C++ fallback ((s0*b0 + s1*b1 + 2^21) >> 22) differs by 1 on some pixels; the
/// opencv-python wheels and JetPack's OpenCV are SIMD builds (SSE2 / NEON baseline).
EDGEDEPTH_HD int resize_vertical(int row0, int row1, int weight0, int weight1) {
  const int top = ((row0 >> 4) * weight0) >> 16;
  const int bottom = ((row1 >> 4) * weight1) >> 16;
  return clamp_int((top + bottom + 2) >> 2, 0, 255);
}

/// `pixel * scale + offset` as numpy does it (two roundings: multiply, then add).
EDGEDEPTH_HD float normalize(int pixel, float scale, float offset) {
  return fadd(fmul(static_cast<float>(pixel), scale), offset);
}

/// One output pixel of the preprocessing: 3 planar values at out[c * plane].
struct Tap {
  int first, second, weight_first, weight_second;
};

EDGEDEPTH_HD void preprocess_pixel(const Source& source, const Tap& tx, const Tap& ty, bool swap, const float* scale,
                                   const float* offset, float* out, std::size_t plane) {
  int p00[3], p01[3], p10[3], p11[3];
  load_pixel(source, tx.first, ty.first, p00);
  load_pixel(source, tx.second, ty.first, p01);
  load_pixel(source, tx.first, ty.second, p10);
  load_pixel(source, tx.second, ty.second, p11);
  for (int c = 0; c < 3; ++c) {
    const int src = swap ? 2 - c : c;
    const int row0 = p00[src] * tx.weight_first + p01[src] * tx.weight_second;
    const int row1 = p10[src] * tx.weight_first + p11[src] * tx.weight_second;
    const int value = resize_vertical(row0, row1, ty.weight_first, ty.weight_second);
    out[c * plane] = normalize(value, scale[c], offset[c]);
  }
}

/// colorize_depth's index: clip((max - d) / (max - min) * 255, 0, 255) truncated, in float32
/// (numpy: float32 array with Python-float scalars). `depth` must be finite.
EDGEDEPTH_HD int colormap_level(float depth, float max_depth, float range) {
  const float level = fmul(fdiv(fsub(max_depth, depth), range), 255.0f);
  if (!(level > 0.0f)) return 0;
  if (level > 255.0f) return 255;
  return static_cast<int>(level);
}

/// depth_to_png_mm: rint(depth * 1000.0) in double, NaN/inf -> 0, clipped to [0, 65535].
EDGEDEPTH_HD std::uint16_t depth_to_millimetres(float depth) {
  const double mm = dmul(static_cast<double>(depth), 1000.0);
  if (!isfinite(mm)) return 0;
  const double rounded = rint(mm);  // ties to even, as np.rint
  if (rounded <= 0.0) return 0;
  if (rounded >= 65535.0) return 65535;
  return static_cast<std::uint16_t>(rounded);
}

/// One point of the organised cloud, or NaNs where the pixel has no depth.
EDGEDEPTH_HD void pinhole_point(float z, int u, int v, float fx, float fy, float cx, float cy, float out[3]) {
  if (!(isfinite(z) && z > 0.0f)) {
    out[0] = out[1] = out[2] = nanf("");
    return;
  }
  out[0] = fdiv(fmul(fsub(static_cast<float>(u), cx), z), fx);
  out[1] = fdiv(fmul(fsub(static_cast<float>(v), cy), z), fy);
  out[2] = z;
}

}  // namespace kernels
}  // namespace edgedepth
