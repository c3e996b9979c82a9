// The CUDA tier: kernels around the per-pixel code of kernels_common.hpp, which the CPU references
// run too, so both tiers agree bit for bit (test_cuda checks it on a GPU).
#include <string>

#include "colormap_luts.hpp"
#include "edgedepth/cuda.hpp"
#include "edgedepth/errors.hpp"
#include "kernels_common.hpp"

namespace edgedepth {

namespace {

__constant__ std::uint8_t kDeviceLut[EDGEDEPTH_COLORMAP_COUNT][256][3] = EDGEDEPTH_COLORMAP_LUT_INIT;

void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw Error(std::string("CUDA ") + what + " failed: " + cudaGetErrorName(status) + " (" +
                cudaGetErrorString(status) + "); is the GPU visible and the driver loaded (nvidia-smi)?");
  }
}

/// A launch's own errors (bad configuration, no device) surface here, not at the next sync.
void launched(const char* kernel) { cuda_check(cudaGetLastError(), kernel); }

dim3 grid_for(int width, int height, dim3 block) {
  return dim3((width + block.x - 1) / block.x, (height + block.y - 1) / block.y);
}

struct PreprocessArgs {
  kernels::Source source;
  const ResizeTap* x;
  const ResizeTap* y;
  int width;
  int height;
  bool swap;
  float scale[3];
  float offset[3];
};

__global__ void preprocess_kernel(PreprocessArgs args, float* out) {
  const int u = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = blockIdx.y * blockDim.y + threadIdx.y;
  if (u >= args.width || v >= args.height) return;
  const ResizeTap tx = args.x[u], ty = args.y[v];
  const std::size_t plane = static_cast<std::size_t>(args.width) * args.height;
  kernels::preprocess_pixel(args.source, {tx.first, tx.second, tx.weight_first, tx.weight_second},
                            {ty.first, ty.second, ty.weight_first, ty.weight_second}, args.swap, args.scale,
                            args.offset, out + static_cast<std::size_t>(v) * args.width + u, plane);
}

__global__ void colorize_kernel(const float* depth, std::size_t count, float max_depth, float range, int colormap,
                                std::uint8_t* bgr) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float d = depth[i];
  std::uint8_t* out = bgr + 3 * i;
  if (!isfinite(d)) {
    out[0] = out[1] = out[2] = 0;
    return;
  }
  const std::uint8_t* colour = kDeviceLut[colormap][kernels::colormap_level(d, max_depth, range)];
  out[0] = colour[0];
  out[1] = colour[1];
  out[2] = colour[2];
}

__global__ void millimetres_kernel(const float* depth, std::size_t count, std::uint16_t* out) {
  const std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) out[i] = kernels::depth_to_millimetres(depth[i]);
}

__global__ void points_kernel(const float* depth, int width, int height, Intrinsics k, float* xyz) {
  const int u = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = blockIdx.y * blockDim.y + threadIdx.y;
  if (u >= width || v >= height) return;
  const std::size_t i = static_cast<std::size_t>(v) * width + u;
  kernels::pinhole_point(depth[i], u, v, k.fx, k.fy, k.cx, k.cy, xyz + 3 * i);
}

unsigned blocks_for(std::size_t count, unsigned threads) {
  return static_cast<unsigned>((count + threads - 1) / threads);
}

}  // namespace

int cuda_device_count(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    if (reason) *reason = std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  if (count == 0 && reason) *reason = "no CUDA device";
  return count;
}

CudaPreprocessor::CudaPreprocessor(const ModelSpec& spec) : spec_(spec) { spec_.validate(); }

CudaPreprocessor::~CudaPreprocessor() {
  if (device_taps_) cudaFree(device_taps_);
}

void CudaPreprocessor::run(const ImageView& image, float* out, cudaStream_t stream) {
  image.check();
  if (image.width != plan_.source_width || image.height != plan_.source_height || image.format != format_) {
    plan_ = PreprocessPlan::make(spec_, image.width, image.height, image.format);
    format_ = image.format;
    const std::size_t taps = plan_.x.taps.size() + plan_.y.taps.size();
    if (taps > capacity_) {
      if (device_taps_) cuda_check(cudaFree(device_taps_), "cudaFree");
      device_taps_ = nullptr;
      capacity_ = 0;
      cuda_check(cudaMalloc(reinterpret_cast<void**>(&device_taps_), taps * sizeof(ResizeTap)), "cudaMalloc");
      capacity_ = taps;
    }
    // The plan's vectors live as long as plan_, so the asynchronous copies may read them later.
    cuda_check(cudaMemcpyAsync(device_taps_, plan_.x.taps.data(), plan_.x.taps.size() * sizeof(ResizeTap),
                               cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (resize table x)");
    cuda_check(cudaMemcpyAsync(device_taps_ + plan_.x.taps.size(), plan_.y.taps.data(),
                               plan_.y.taps.size() * sizeof(ResizeTap), cudaMemcpyHostToDevice, stream),
               "cudaMemcpyAsync (resize table y)");
  }
  const bool nv12 = image.format == PixelFormat::NV12;
  PreprocessArgs args{{image.data, image.row_bytes(), nv12 ? image.uv_plane() : nullptr, image.uv_row_bytes(), nv12},
                      device_taps_, device_taps_ + plan_.x.taps.size(), plan_.width, plan_.height,
                      plan_.swap_channels, {}, {}};
  for (int c = 0; c < 3; ++c) {
    args.scale[c] = plan_.scale[c];
    args.offset[c] = plan_.offset[c];
  }
  const dim3 block(32, 8);
  preprocess_kernel<<<grid_for(plan_.width, plan_.height, block), block, 0, stream>>>(args, out);
  launched("preprocess kernel");
}

void colorize_cuda(const float* depth, int height, int width, double min_depth, double max_depth, Colormap colormap,
                   std::uint8_t* bgr, cudaStream_t stream) {
  check_depth_range(min_depth, max_depth);
  const std::size_t count = static_cast<std::size_t>(height) * width;
  if (count == 0) return;
  colorize_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(depth, count, static_cast<float>(max_depth),
                                                               static_cast<float>(max_depth - min_depth),
                                                               static_cast<int>(colormap), bgr);
  launched("colorize kernel");
}

void depth_to_millimetres_cuda(const float* depth, std::size_t count, std::uint16_t* millimetres,
                               cudaStream_t stream) {
  if (count == 0) return;
  millimetres_kernel<<<blocks_for(count, 256), 256, 0, stream>>>(depth, count, millimetres);
  launched("millimetres kernel");
}

void depth_to_points_cuda(const float* depth, int height, int width, const Intrinsics& intrinsics, float* xyz,
                          cudaStream_t stream) {
  intrinsics.check();
  if (height <= 0 || width <= 0) return;
  const dim3 block(32, 8);
  points_kernel<<<grid_for(width, height, block), block, 0, stream>>>(depth, width, height, intrinsics, xyz);
  launched("points kernel");
}

}  // namespace edgedepth
