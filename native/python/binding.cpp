// edgedepth._native: the core library's preprocessing and postprocessing on numpy arrays (pybind11).
//
// Same signatures and results as the Python functions they mirror (edgedepth.preprocess.preprocess,
// edgedepth.colormap.colorize_depth, edgedepth.runtime.sinks.depth_to_png_mm); errors are raised as
// edgedepth.errors classes with the same one-line messages. The GIL is released while C++ works, so
// depth-run's reader thread runs beside its inference thread.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "edgedepth/errors.hpp"
#include "edgedepth/postprocess.hpp"
#include "edgedepth/preprocess.hpp"
#include "edgedepth/spec.hpp"
#ifdef EDGEDEPTH_WITH_CUDA
#include "edgedepth/cuda.hpp"
#endif

namespace py = pybind11;
using namespace pybind11::literals;

namespace edgedepth {
namespace {

using ByteArray = py::array_t<std::uint8_t, py::array::c_style>;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

[[noreturn]] void raise_python(char const* error_class, std::string const& message) {
    py::object type = py::module_::import("edgedepth.errors").attr(error_class);
    PyErr_SetString(type.ptr(), message.c_str());
    throw py::error_already_set();
}

//! An HxWx3 (BGR/RGB) or (H*3/2)xW (NV12) uint8 array as a frame; the array keeps the pixels alive.
ImageView image_view(py::array const& image, PixelFormat format, ByteArray& pixels) {
    bool const nv12 = format == PixelFormat::NV12;
    bool const shaped = nv12 ? image.ndim() == 2 : image.ndim() == 3 && image.shape(2) == 3;
    if (!shaped || !image.dtype().is(py::dtype::of<std::uint8_t>())) {
        std::string const expected = nv12 ? "an (H*3/2)xW uint8 NV12 frame (Y plane, then the UV plane)"
                                          : "an HxWx3 uint8 image";
        std::string const hint = nv12 ? "" : "; convert grey or BGRA frames with cv2.cvtColor first";
        raise_python("EdgeDepthError", "expected " + expected + ", got shape " +
                                           py::str(image.attr("shape")).cast<std::string>() + " dtype " +
                                           py::str(image.dtype()).cast<std::string>() + hint);
    }
    pixels = ByteArray::ensure(image);
    ImageView view;
    view.format = format;
    view.width = static_cast<int>(pixels.shape(1));
    view.height = static_cast<int>(nv12 ? pixels.shape(0) * 2 / 3 : pixels.shape(0));
    view.data = pixels.data();
    if (nv12 && pixels.shape(0) % 3 != 0) {
        raise_python("EdgeDepthError", "an NV12 frame has H*3/2 rows; got " + std::to_string(pixels.shape(0)) +
                                           ", not a multiple of 3: pass the Y plane and the UV plane stacked");
    }
    return view;
}

FloatArray depth_array(py::array const& depth) {
    FloatArray array = FloatArray::ensure(depth);
    if (!array || array.ndim() != 2) {
        raise_python("EdgeDepthError", "expected an HxW depth map in metres, got shape " +
                                           py::str(depth.attr("shape")).cast<std::string>() +
                                           "; pass depth[0, 0] of the network's N x 1 x H x W output");
    }
    return array;
}

py::array_t<float> preprocess(py::array const& image, ModelSpec const& spec, std::string const& input_order) {
    ByteArray pixels;
    ImageView const view = image_view(image, parse_pixel_format(input_order), pixels);
    py::array_t<float> out({1, 3, spec.height, spec.width});
    float* data = out.mutable_data();
    {
        py::gil_scoped_release released;
        view.check();
        preprocess_cpu(view, spec, data);
    }
    return out;
}

//! An HxW float32 depth map in, an HxW (`channels` 1) or HxWxchannels array of T out, filled by
//! `work(depth, height, width, out)` with the GIL released.
template <typename T, typename Work>
py::array_t<T> from_depth(py::array const& depth, int channels, Work work) {
    FloatArray const values = depth_array(depth);
    int const height = static_cast<int>(values.shape(0)), width = static_cast<int>(values.shape(1));
    py::array_t<T> out = channels == 1 ? py::array_t<T>({height, width}) : py::array_t<T>({height, width, channels});
    T* data = out.mutable_data();
    py::gil_scoped_release released;
    work(values.data(), height, width, data);
    return out;
}

py::array_t<std::uint8_t> colorize(py::array const& depth, double min_depth, double max_depth,
                                   std::string const& colormap) {
    Colormap const map = parse_colormap(colormap);
    check_depth_range(min_depth, max_depth);
    return from_depth<std::uint8_t>(depth, 3, [&](float const* in, int height, int width, std::uint8_t* out) {
        colorize_cpu(in, height, width, min_depth, max_depth, map, out);
    });
}

py::array_t<std::uint16_t> millimetres(py::array const& depth) {
    return from_depth<std::uint16_t>(depth, 1, [](float const* in, int height, int width, std::uint16_t* out) {
        depth_to_millimetres_cpu(in, static_cast<std::size_t>(height) * width, out);
    });
}

py::array_t<float> points(py::array const& depth, float fx, float fy, float cx, float cy) {
    Intrinsics const intrinsics{fx, fy, cx, cy};
    intrinsics.check();
    return from_depth<float>(depth, 3, [&](float const* in, int height, int width, float* out) {
        depth_to_points_cpu(in, height, width, intrinsics, out);
    });
}

#ifdef EDGEDEPTH_WITH_CUDA
// CUDA variants for numpy arrays: the same results, computed by the kernels. Arrays are copied to
// the device and back on one stream; device buffers grow and are reused across calls.

void cuda_check(cudaError_t status, char const* what) {
    if (status != cudaSuccess) throw DeviceError(std::string(what) + " failed: " + cudaGetErrorString(status));
}

class DeviceBuffer {
public:
    ~DeviceBuffer() { cudaFree(data_); }
    void* get(std::size_t bytes) {
        if (bytes > size_) {
            cudaFree(data_);
            data_ = nullptr, size_ = 0;
            cuda_check(cudaMalloc(&data_, bytes), "cudaMalloc");
            size_ = bytes;
        }
        return data_;
    }

private:
    void* data_ = nullptr;
    std::size_t size_ = 0;
};

struct CudaState {
    std::mutex mutex;
    cudaStream_t stream = nullptr;
    DeviceBuffer in, out;
    std::unique_ptr<CudaPreprocessor> preprocessor;
};

CudaState& cuda_state() {
    // Never destroyed: freeing device memory at interpreter exit would race CUDA's own teardown.
    static CudaState* state = new CudaState();
    return *state;
}

bool same_preprocessing(ModelSpec const& a, ModelSpec const& b) {
    return a.height == b.height && a.width == b.width && a.mean == b.mean && a.std == b.std &&
           a.color_order == b.color_order;
}

std::string cuda_problem() {
    std::string reason;
    return cuda_device_count(&reason) > 0 ? std::string() : "no usable CUDA device (" + reason + ")";
}

//! Host bytes -> device, `work(device_in, device_out)` on the stream, device -> `out`; one synchronisation.
template <typename Work>
void on_device(void const* in, std::size_t in_bytes, void* out, std::size_t out_bytes, Work work) {
    CudaState& state = cuda_state();
    std::lock_guard<std::mutex> lock(state.mutex);
    if (state.stream == nullptr) cuda_check(cudaStreamCreateWithFlags(&state.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    void* device_in = state.in.get(in_bytes);
    void* device_out = state.out.get(out_bytes);
    cuda_check(cudaMemcpyAsync(device_in, in, in_bytes, cudaMemcpyHostToDevice, state.stream), "cudaMemcpyAsync");
    work(state, device_in, device_out);
    cuda_check(cudaGetLastError(), "a CUDA kernel launch");
    cuda_check(cudaMemcpyAsync(out, device_out, out_bytes, cudaMemcpyDeviceToHost, state.stream), "cudaMemcpyAsync");
    cuda_check(cudaStreamSynchronize(state.stream), "cudaStreamSynchronize");
}

py::array_t<float> cuda_preprocess(py::array const& image, ModelSpec const& spec, std::string const& input_order) {
    ByteArray pixels;
    ImageView view = image_view(image, parse_pixel_format(input_order), pixels);
    py::array_t<float> out({1, 3, spec.height, spec.width});
    float* data = out.mutable_data();
    py::gil_scoped_release released;
    view.check();
    std::size_t const out_bytes = static_cast<std::size_t>(3) * spec.height * spec.width * sizeof(float);
    on_device(view.data, static_cast<std::size_t>(pixels.nbytes()), data, out_bytes,
              [&](CudaState& state, void* device_in, void* device_out) {
                  if (!state.preprocessor || !same_preprocessing(state.preprocessor->spec(), spec)) {
                      state.preprocessor = std::make_unique<CudaPreprocessor>(spec);
                  }
                  view.data = static_cast<std::uint8_t const*>(device_in);
                  state.preprocessor->run(view, static_cast<float*>(device_out), state.stream);
              });
    return out;
}

//! from_depth() with `work(state, device depth, height, width, device out)` run on the GPU.
template <typename T, typename Work>
py::array_t<T> cuda_from_depth(py::array const& depth, int channels, Work work) {
    return from_depth<T>(depth, channels, [&](float const* in, int height, int width, T* out) {
        std::size_t const pixels = static_cast<std::size_t>(height) * width;
        on_device(in, pixels * sizeof(float), out, pixels * channels * sizeof(T),
                  [&](CudaState& state, void* device_in, void* device_out) {
                      work(state, static_cast<float const*>(device_in), height, width, static_cast<T*>(device_out));
                  });
    });
}

py::array_t<std::uint8_t> cuda_colorize(py::array const& depth, double min_depth, double max_depth,
                                        std::string const& colormap) {
    Colormap const map = parse_colormap(colormap);
    check_depth_range(min_depth, max_depth);
    return cuda_from_depth<std::uint8_t>(depth, 3, [&](CudaState& state, float const* in, int height, int width,
                                                       std::uint8_t* out) {
        colorize_cuda(in, height, width, min_depth, max_depth, map, out, state.stream);
    });
}

py::array_t<std::uint16_t> cuda_millimetres(py::array const& depth) {
    return cuda_from_depth<std::uint16_t>(depth, 1, [](CudaState& state, float const* in, int height, int width,
                                                       std::uint16_t* out) {
        depth_to_millimetres_cuda(in, static_cast<std::size_t>(height) * width, out, state.stream);
    });
}

py::array_t<float> cuda_points(py::array const& depth, float fx, float fy, float cx, float cy) {
    Intrinsics const intrinsics{fx, fy, cx, cy};
    intrinsics.check();
    return cuda_from_depth<float>(depth, 3, [&](CudaState& state, float const* in, int height, int width, float* out) {
        depth_to_points_cuda(in, height, width, intrinsics, out, state.stream);
    });
}
#endif

void translate_errors(std::exception_ptr error) {
    try {
        if (error) std::rethrow_exception(error);
    } catch (SpecError const& exc) {
        raise_python("SpecError", exc.what());
    } catch (SidecarError const& exc) {
        raise_python("ExportError", exc.what());
    } catch (DeviceError const& exc) {
        raise_python("DeviceError", exc.what());
    } catch (Error const& exc) {
        raise_python("EdgeDepthError", exc.what());
    }
}

}  // namespace
}  // namespace edgedepth

PYBIND11_MODULE(_native, m) {
    using namespace edgedepth;
    m.doc() = "edgedepth's C++ preprocessing and postprocessing (built by `make native`)";
    py::register_exception_translator(&translate_errors);

    py::class_<ModelSpec>(m, "ModelSpec", "The C++ ModelSpec, parsed from ModelSpec.to_json()")
        .def_static("from_json", &ModelSpec::from_json, "text"_a)
        .def_readonly("height", &ModelSpec::height)
        .def_readonly("width", &ModelSpec::width)
        .def_readonly("min_depth", &ModelSpec::min_depth)
        .def_readonly("max_depth", &ModelSpec::max_depth)
        .def_readonly("color_order", &ModelSpec::color_order);

    m.def("preprocess", &preprocess, "image"_a, "spec"_a, "input_order"_a = "BGR",
          "HxWx3 uint8 BGR/RGB (or (H*3/2)xW NV12) -> 1x3xHxW float32, as edgedepth.preprocess.preprocess");
    m.def("colorize_depth", &colorize, "depth"_a, "min_depth"_a, "max_depth"_a, "colormap"_a = "turbo",
          "HxW metres -> HxWx3 uint8 BGR, as edgedepth.colormap.colorize_depth");
    m.def("depth_to_mm", &millimetres, "depth"_a, "HxW metres -> HxW uint16 millimetres (the --save-depth PNG)");
    m.def("point_cloud", &points, "depth"_a, "fx"_a, "fy"_a, "cx"_a, "cy"_a,
          "HxW metres -> HxWx3 float32 organised point cloud (NaN where there is no depth)");
#ifdef EDGEDEPTH_WITH_CUDA
    m.attr("built_with_cuda") = true;
    m.def("cuda_problem", &cuda_problem, "Why the CUDA functions cannot run here ('' when they can)");
    m.def("cuda_preprocess", &cuda_preprocess, "image"_a, "spec"_a, "input_order"_a = "BGR",
          "preprocess() by the fused CUDA kernel (host arrays in and out)");
    m.def("cuda_colorize_depth", &cuda_colorize, "depth"_a, "min_depth"_a, "max_depth"_a, "colormap"_a = "turbo",
          "colorize_depth() on the GPU");
    m.def("cuda_depth_to_mm", &cuda_millimetres, "depth"_a, "depth_to_mm() on the GPU");
    m.def("cuda_point_cloud", &cuda_points, "depth"_a, "fx"_a, "fy"_a, "cx"_a, "cy"_a, "point_cloud() on the GPU");
#else
    m.attr("built_with_cuda") = false;
    m.def("cuda_problem", [] { return std::string("edgedepth._native was built without CUDA (no nvcc found)"); },
          "Why the CUDA functions cannot run here ('' when they can)");
#endif
}
