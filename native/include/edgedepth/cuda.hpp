// The CUDA tier (built where nvcc is found; EDGEDEPTH_WITH_CUDA is then defined): the same
// preprocessing and postprocessing as the CPU references, bit for bit, as kernels on a stream.
// Pointers are device memory, or memory the GPU can read directly (cudaHostAlloc'd mapped memory;
// on Jetson, NVMM/unified buffers). Every call is asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "edgedepth/postprocess.hpp"
#include "edgedepth/preprocess.hpp"
#include "edgedepth/spec.hpp"

namespace edgedepth {

/// Usable CUDA devices; 0 when there is no GPU or driver, with CUDA's reason in `*reason`.
int cuda_device_count(std::string* reason = nullptr);

/// The fused preprocessing kernel: NV12/BGR/RGB uint8 -> resize (OpenCV INTER_LINEAR, fixed point)
/// -> colour order -> (x/255 - mean)/std -> float32 NCHW, one thread per output pixel. The resize
/// tables are made on the host and uploaded when the frame size or format changes.
class CudaPreprocessor {
 public:
  explicit CudaPreprocessor(const ModelSpec& spec);
  ~CudaPreprocessor();
  CudaPreprocessor(const CudaPreprocessor&) = delete;
  CudaPreprocessor& operator=(const CudaPreprocessor&) = delete;

  /// `image` planes on the device; `out` holds 3 * spec.height * spec.width floats on the device.
  void run(const ImageView& image, float* out, cudaStream_t stream = nullptr);
  const ModelSpec& spec() const { return spec_; }

 private:
  ModelSpec spec_;
  PreprocessPlan plan_;
  PixelFormat format_ = PixelFormat::BGR;
  ResizeTap* device_taps_ = nullptr;  // plan_.x taps, then plan_.y taps
  std::size_t capacity_ = 0;
};

/// colorize_cpu on the device: depth (HxW float32) -> bgr (HxWx3 uint8).
void colorize_cuda(const float* depth, int height, int width, double min_depth, double max_depth, Colormap colormap,
                   std::uint8_t* bgr, cudaStream_t stream = nullptr);
/// depth_to_millimetres_cpu on the device.
void depth_to_millimetres_cuda(const float* depth, std::size_t count, std::uint16_t* millimetres,
                               cudaStream_t stream = nullptr);
/// depth_to_points_cpu on the device: xyz holds HxWx3 float32.
void depth_to_points_cuda(const float* depth, int height, int width, const Intrinsics& intrinsics, float* xyz,
                          cudaStream_t stream = nullptr);

}  // namespace edgedepth
