// The CUDA tier against the CPU references: preprocessing (BGR, RGB, NV12 with padded rows, several
// sizes), colour maps, millimetres and points must agree bit for bit. Without a GPU this exits 77
// (ctest: skipped); with EDGEDEPTH_REQUIRE_GPU=1 a missing GPU is a failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "check.hpp"
#include "edgedepth/cuda.hpp"

namespace ed = edgedepth;

namespace {

void cuda_ok(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(status));
    std::exit(1);
  }
}

template <typename T>
T* to_device(const std::vector<T>& host) {
  T* device = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&device), host.size() * sizeof(T) + 1), "cudaMalloc");
  cuda_ok(cudaMemcpy(device, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  return device;
}

template <typename T>
std::vector<T> to_host(const T* device, std::size_t count) {
  std::vector<T> host(count);
  cuda_ok(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
  return host;
}

/// Bitwise equality (NaN == NaN): the tiers share every operation, so nothing less is expected.
template <typename T>
std::size_t differing(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return std::max(a.size(), b.size());
  std::size_t count = 0;
  for (std::size_t i = 0; i < a.size(); ++i) count += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  return count;
}

void preprocess_agrees(std::mt19937& rng) {
  struct Case { int height, width, spec_height, spec_width; };
  const Case cases[] = {{480, 640, 256, 320}, {720, 1280, 256, 320}, {1080, 1920, 384, 640}, {38, 54, 64, 96},
                        {64, 64, 32, 32}, {256, 320, 256, 320}};
  for (const ed::PixelFormat format : {ed::PixelFormat::BGR, ed::PixelFormat::RGB, ed::PixelFormat::NV12}) {
    for (const Case& c : cases) {
      ed::ModelSpec spec;
      spec.height = c.spec_height;
      spec.width = c.spec_width;
      spec.color_order = c.width % 3 ? "RGB" : "BGR";
      const bool nv12 = format == ed::PixelFormat::NV12;
      const std::size_t stride = (nv12 ? c.width : 3 * c.width) + 32;  // padded rows
      const int rows = nv12 ? c.height * 3 / 2 : c.height;
      std::vector<std::uint8_t> frame(stride * rows);
      for (auto& byte : frame) byte = static_cast<std::uint8_t>(rng());
      ed::ImageView host{format, c.width, c.height, frame.data(), stride};
      const std::vector<float> expected = ed::preprocess_cpu(host, spec);

      std::uint8_t* device_frame = to_device(frame);
      float* device_out = nullptr;
      cuda_ok(cudaMalloc(reinterpret_cast<void**>(&device_out), expected.size() * sizeof(float)), "cudaMalloc");
      ed::CudaPreprocessor preprocessor(spec);
      ed::ImageView device{format, c.width, c.height, device_frame, stride};
      preprocessor.run(device, device_out);
      preprocessor.run(device, device_out);  // the cached tables give the same result
      const std::size_t diff = differing(to_host(device_out, expected.size()), expected);
      std::printf("preprocess %s %dx%d -> %dx%d: %zu values differ from the CPU reference\n",
                  ed::pixel_format_name(format), c.width, c.height, c.spec_width, c.spec_height, diff);
      CHECK_EQ(diff, std::size_t(0));
      cudaFree(device_frame);
      cudaFree(device_out);
    }
  }
}

std::vector<float> random_depth(std::mt19937& rng, std::size_t count) {
  std::uniform_real_distribution<float> metres(-1.0f, 90.0f);
  std::vector<float> depth(count);
  for (float& d : depth) d = metres(rng);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), 0.0f, -0.0f, 0.1f, 10.0f, 0.0005f, 0.0015f,
                            65.535f, 65.5355f, 70.0f, 1e-30f, 3e38f, -3e38f};
  std::copy(std::begin(specials), std::end(specials), depth.begin());
  return depth;
}

void postprocess_agrees(std::mt19937& rng) {
  const int width = 640, height = 384;
  const std::size_t count = static_cast<std::size_t>(width) * height;
  const std::vector<float> depth = random_depth(rng, count);
  float* device_depth = to_device(depth);
  std::uint8_t* device_bgr = nullptr;
  std::uint16_t* device_mm = nullptr;
  float* device_xyz = nullptr;
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&device_bgr), 3 * count), "cudaMalloc");
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&device_mm), 2 * count), "cudaMalloc");
  cuda_ok(cudaMalloc(reinterpret_cast<void**>(&device_xyz), 12 * count), "cudaMalloc");

  for (int map = 0; map < 5; ++map) {
    const auto colormap = static_cast<ed::Colormap>(map);
    std::vector<std::uint8_t> expected(3 * count);
    ed::colorize_cpu(depth.data(), height, width, 0.1, 10.0, colormap, expected.data());
    ed::colorize_cuda(device_depth, height, width, 0.1, 10.0, colormap, device_bgr);
    const std::size_t diff = differing(to_host(device_bgr, 3 * count), expected);
    std::printf("colormap %s: %zu values differ\n", ed::colormap_name(colormap), diff);
    CHECK_EQ(diff, std::size_t(0));
  }
  std::vector<std::uint16_t> mm(count);
  ed::depth_to_millimetres_cpu(depth.data(), count, mm.data());
  ed::depth_to_millimetres_cuda(device_depth, count, device_mm);
  CHECK_EQ(differing(to_host(device_mm, count), mm), std::size_t(0));

  const ed::Intrinsics k{612.3f, 611.9f, 319.5f, 191.25f};
  std::vector<float> xyz(3 * count);
  ed::depth_to_points_cpu(depth.data(), height, width, k, xyz.data());
  ed::depth_to_points_cuda(device_depth, height, width, k, device_xyz);
  CHECK_EQ(differing(to_host(device_xyz, 3 * count), xyz), std::size_t(0));
  cudaFree(device_depth);
  cudaFree(device_bgr);
  cudaFree(device_mm);
  cudaFree(device_xyz);
}

}  // namespace

int main() {
  std::string reason;
  if (ed::cuda_device_count(&reason) == 0) {
    const char* require = std::getenv("EDGEDEPTH_REQUIRE_GPU");
    if (require && std::string(require) == "1") {
      std::fprintf(stderr, "test_cuda: EDGEDEPTH_REQUIRE_GPU=1 but CUDA finds no GPU (%s)\n", reason.c_str());
      return 1;
    }
    std::printf("test_cuda: skipped, no CUDA GPU (%s); EDGEDEPTH_REQUIRE_GPU=1 makes this a failure\n", reason.c_str());
    return 77;
  }
  std::mt19937 rng(15);
  preprocess_agrees(rng);
  postprocess_agrees(rng);
  return edgedepth_test::finish("test_cuda");
}
