// edgedepth::TrtRunner (see trt_runner.h). TensorRT API per generation, chosen at compile time
// with NV_TENSORRT_MAJOR as edgedepth/trt/generation.py chooses at run time:
//   8.5 / 8.6 ("8"):  binding indices + IExecutionContext::enqueueV2(bindings, stream, nullptr)
//   9.x / 10.x ("10") and 11.x ("11"): IExecutionContext::setTensorAddress + enqueueV3(stream)
// Checked against NVIDIA's headers: ../shared/third_party/tensorrt-headers/{8.6,10.3,10.16,11.1}
// (NVIDIA/TensorRT release branches, commits in SOURCES.txt), by ctest on every build.
#include "trt_runner.h"

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_fp16.h>

#include <sys/utsname.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#if NV_TENSORRT_MAJOR < 8 || (NV_TENSORRT_MAJOR == 8 && NV_TENSORRT_MINOR < 5)
#error "edgedepth supports TensorRT 8.5 (JetPack 5.1) and newer: the name-based tensor API starts there"
#endif

#define EDGEDEPTH_TRT_BINDINGS (NV_TENSORRT_MAJOR == 8)

namespace edgedepth {
namespace {

using nvinfer1::DataType;
using nvinfer1::Dims;

void cuda_check(cudaError_t status, char const* what) {
    if (status != cudaSuccess) {
        throw TrtError(std::string(what) + " failed: " + cudaGetErrorString(status) +
                       "; check the GPU with nvidia-smi (desktop) or tegrastats (Jetson)");
    }
}

//! Keeps TensorRT's errors for the one-line message of a failed deserialisation (TensorRT reports
//! why only through the logger: 11.4.1 support matrix) and shows warnings on stderr.
class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, char const* message) noexcept override {
        if (severity <= Severity::kERROR) {
            errors.emplace_back(message);
        } else if (severity == Severity::kWARNING) {
            std::cerr << "TensorRT: " << message << "\n";
        }
    }
    std::vector<std::string> errors;
};

std::vector<char> read_file(std::string const& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw TrtError("cannot read engine " + path + ": " + std::strerror(errno) +
                       "; pass the .engine file written by `depth-export engine`");
    }
    return std::vector<char>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::size_t volume(Dims const& dims) {
    std::size_t count = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i) {
        count *= static_cast<std::size_t>(std::max<int64_t>(dims.d[i], 0));
    }
    return count;
}

bool has_wildcard(Dims const& dims) {
    for (int32_t i = 0; i < dims.nbDims; ++i) {
        if (dims.d[i] < 0) return true;
    }
    return false;
}

std::size_t element_size(DataType type, std::string const& tensor) {
    if (type == DataType::kFLOAT) return sizeof(float);
    if (type == DataType::kHALF) return sizeof(__half);
    throw TrtError("engine tensor " + tensor + " is neither float32 nor float16 (TensorRT DataType " +
                   std::to_string(static_cast<int>(type)) + "); rebuild it with `depth-export engine`");
}

//! "8601" (8.x: major*1000 + minor*100 + patch) or "100300" (10.x on: major*10000 + ...) ->
//! "8.6.1" / "10.3.0" (NvInferRuntimeBase.h, NV_TENSORRT_VERSION, in each generation).
std::string decode_version(int32_t value) {
    int32_t const major = value >= 100000 ? value / 10000 : value / 1000;
    int32_t const rest = value >= 100000 ? value % 10000 : value % 1000;
    return std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
}

}  // namespace

char const* trt_generation() {
#if NV_TENSORRT_MAJOR == 8
    return "8";
#elif NV_TENSORRT_MAJOR <= 10
    return "10";
#else
    return "11";
#endif
}

std::string trt_library_version() { return decode_version(getInferLibVersion()); }

GpuInfo query_gpu(int device) {
    cudaDeviceProp props{};
    cuda_check(cudaGetDeviceProperties(&props, device), "cudaGetDeviceProperties");
    GpuInfo gpu;
    gpu.name = props.name;
    gpu.compute_capability = std::to_string(props.major) + "." + std::to_string(props.minor);
    gpu.integrated = props.integrated != 0;
    utsname host{};
    if (uname(&host) == 0) {  // what Python's platform.machine()/system() report
        gpu.machine = host.machine;
        gpu.system = host.sysname;
    }
    return gpu;
}

struct TrtRunner::Impl {
    Logger logger;
    std::unique_ptr<nvinfer1::IRuntime> runtime;
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
    std::unique_ptr<nvinfer1::IExecutionContext> context;
    DataType input_type = DataType::kFLOAT;
    DataType output_type = DataType::kFLOAT;
    Dims input_dims{};
    Dims output_dims{};
    void* host_in = nullptr;
    void* host_out = nullptr;
    void* device_in = nullptr;
    void* device_out = nullptr;
#if EDGEDEPTH_TRT_BINDINGS
    std::vector<void*> bindings;
    int32_t input_index = -1;
    int32_t output_index = -1;
#endif

    ~Impl() {
        // Buffers, then context before engine before runtime: the reverse of creation.
        cudaFreeHost(host_in);
        cudaFreeHost(host_out);
        cudaFree(device_in);
        cudaFree(device_out);
        context.reset();
        engine.reset();
        runtime.reset();
    }
};

TrtRunner::TrtRunner(std::string const& engine_path, int device) : engine_path_(engine_path) {
    sidecar_ = read_sidecar(engine_path);  // refuses a missing, unreadable or foreign sidecar
    cuda_check(cudaSetDevice(device), "cudaSetDevice");
    warnings_ = check_compatible(sidecar_, trt_library_version(), query_gpu(device), engine_path);
    std::vector<char> const plan = read_file(engine_path);
    impl_ = std::make_unique<Impl>();
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    load(plan);
    prepare_buffers();
    allocate_buffers();
}

void TrtRunner::allocate_buffers() {
    Impl& impl = *impl_;
    std::size_t const in_bytes = input_elements() * element_size(impl.input_type, spec().input_name);
    std::size_t const out_bytes = output_elements() * element_size(impl.output_type, spec().output_name);
    cuda_check(cudaMallocHost(&impl.host_in, in_bytes), "cudaMallocHost (input)");
    cuda_check(cudaMallocHost(&impl.host_out, out_bytes), "cudaMallocHost (output)");
    cuda_check(cudaMalloc(&impl.device_in, in_bytes), "cudaMalloc (input)");
    cuda_check(cudaMalloc(&impl.device_out, out_bytes), "cudaMalloc (output)");
}

TrtRunner::~TrtRunner() {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    impl_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

void TrtRunner::load(std::vector<char> const& plan) {
    Impl& impl = *impl_;
    impl.runtime.reset(nvinfer1::createInferRuntime(impl.logger));
    if (!impl.runtime) throw TrtError("TensorRT could not create a runtime (createInferRuntime returned null)");
    BuildOptions const& options = sidecar_.build_options;
    if (options.dla_core) {
        // IRuntime::setDLACore defaults to -1; trtexec sets it before deserialising
        // (release/10.3 samples/common/sampleEngines.cpp:117-120).
        impl.runtime->setDLACore(*options.dla_core);
    }
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 6
    // A version-compatible plan embeds the lean runtime, which is host code (IRuntime, 8.6 on).
    if (options.version_compatible) impl.runtime->setEngineHostCodeAllowed(true);
#endif
    impl.engine.reset(impl.runtime->deserializeCudaEngine(plan.data(), plan.size()));
    if (!impl.engine) {  // TensorRT says why only through the logger
        throw TrtError(deserialize_failure_message(engine_path_, impl.logger.errors, &sidecar_));
    }
    impl.context.reset(impl.engine->createExecutionContext());
    if (!impl.context) {
        throw TrtError("TensorRT could not create an execution context for " + engine_path_ + " (out of GPU memory?)");
    }
}

#if EDGEDEPTH_TRT_BINDINGS
// TensorRT 8.x: the binding-index API (IExecutionContext::enqueueV2 and ICudaEngine::getBindingIndex
// are marked deprecated from 8.5 in NvInferRuntime.h, superseded by the name-based API; they are
// what JetPack 5.1's 8.5 samples use, so the 8 generation keeps them).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
void TrtRunner::prepare_buffers() {
    Impl& impl = *impl_;
    nvinfer1::ICudaEngine& engine = *impl.engine;
    ModelSpec const& model = spec();
    impl.input_index = engine.getBindingIndex(model.input_name.c_str());
    impl.output_index = engine.getBindingIndex(model.output_name.c_str());
    if (impl.input_index < 0 || impl.output_index < 0 || !engine.bindingIsInput(impl.input_index)) {
        throw TrtError("engine " + engine_path_ + " has no input " + model.input_name + " and output " +
                       model.output_name + " as its spec names; rebuild it");
    }
    impl.input_dims = engine.getBindingDimensions(impl.input_index);
    if (has_wildcard(impl.input_dims)) {
        Dims nominal = impl.input_dims;
        nominal.d[0] = 1, nominal.d[1] = 3, nominal.d[2] = model.height, nominal.d[3] = model.width;
        if (!impl.context->setBindingDimensions(impl.input_index, nominal)) {
            throw TrtError("the engine does not accept input 1x3x" + std::to_string(model.height) + "x" +
                           std::to_string(model.width) + ": rebuild it with a profile covering it");
        }
        impl.input_dims = nominal;
    }
    impl.output_dims = impl.context->getBindingDimensions(impl.output_index);
    impl.input_type = engine.getBindingDataType(impl.input_index);
    impl.output_type = engine.getBindingDataType(impl.output_index);
    impl.bindings.assign(static_cast<std::size_t>(engine.getNbBindings()), nullptr);
}

void TrtRunner::enqueue() {
    Impl& impl = *impl_;
    impl.bindings[static_cast<std::size_t>(impl.input_index)] = impl.device_in;
    impl.bindings[static_cast<std::size_t>(impl.output_index)] = impl.device_out;
    if (!impl.context->enqueueV2(impl.bindings.data(), stream_, nullptr)) {
        throw TrtError("TensorRT enqueueV2 failed; see the TensorRT messages above");
    }
}
#pragma GCC diagnostic pop
#else
// TensorRT 9.x, 10.x and 11.x: tensors by name (the binding API is gone from 10.0, NvInferRuntime.h).
void TrtRunner::prepare_buffers() {
    Impl& impl = *impl_;
    nvinfer1::ICudaEngine& engine = *impl.engine;
    ModelSpec const& model = spec();
    char const* input = model.input_name.c_str();
    char const* output = model.output_name.c_str();
    bool found_input = false, found_output = false;
    for (int32_t i = 0; i < engine.getNbIOTensors(); ++i) {
        std::string const name = engine.getIOTensorName(i);
        bool const is_input = engine.getTensorIOMode(name.c_str()) == nvinfer1::TensorIOMode::kINPUT;
        found_input |= is_input && name == model.input_name;
        found_output |= !is_input && name == model.output_name;
    }
    if (!found_input || !found_output) {
        throw TrtError("engine " + engine_path_ + " has no input " + model.input_name + " and output " +
                       model.output_name + " as its spec names; rebuild it");
    }
    impl.input_dims = engine.getTensorShape(input);
    if (has_wildcard(impl.input_dims)) {
        Dims nominal = impl.input_dims;
        nominal.d[0] = 1, nominal.d[1] = 3, nominal.d[2] = model.height, nominal.d[3] = model.width;
        if (!impl.context->setInputShape(input, nominal)) {
            throw TrtError("the engine does not accept input 1x3x" + std::to_string(model.height) + "x" +
                           std::to_string(model.width) + ": rebuild it with a profile covering it");
        }
        impl.input_dims = nominal;
    }
    impl.output_dims = impl.context->getTensorShape(output);
    impl.input_type = engine.getTensorDataType(input);
    impl.output_type = engine.getTensorDataType(output);
}

void TrtRunner::enqueue() {
    Impl& impl = *impl_;
    // Addresses are set before every enqueue: cheap, and never stale (IExecutionContext::enqueueV3).
    if (!impl.context->setTensorAddress(spec().input_name.c_str(), impl.device_in) ||
        !impl.context->setTensorAddress(spec().output_name.c_str(), impl.device_out)) {
        throw TrtError("TensorRT refused a tensor address for " + engine_path_ + "; see the TensorRT messages above");
    }
    if (!impl.context->enqueueV3(stream_)) {
        throw TrtError("TensorRT enqueueV3 failed; see the TensorRT messages above");
    }
}
#endif

std::size_t TrtRunner::input_elements() const { return volume(impl_->input_dims); }
std::size_t TrtRunner::output_elements() const { return volume(impl_->output_dims); }
int TrtRunner::output_height() const {
    Dims const& dims = impl_->output_dims;
    return dims.nbDims >= 2 ? static_cast<int>(dims.d[dims.nbDims - 2]) : 1;
}
int TrtRunner::output_width() const {
    Dims const& dims = impl_->output_dims;
    return dims.nbDims >= 1 ? static_cast<int>(dims.d[dims.nbDims - 1]) : 1;
}

std::string TrtRunner::detail() const {
    return "tensorrt " + trt_library_version() + " (" + sidecar_.precision + ", native)";
}

float* TrtRunner::device_input() {
    return impl_->input_type == DataType::kFLOAT ? static_cast<float*>(impl_->device_in) : nullptr;
}

void TrtRunner::infer(float const* input, float* depth) {
    Impl& impl = *impl_;
    std::size_t const count = input_elements();
    if (impl.input_type == DataType::kHALF) {  // FP16-input engines (AutoCast keep_io_types=False)
        __half* host = static_cast<__half*>(impl.host_in);
        for (std::size_t i = 0; i < count; ++i) host[i] = __float2half(input[i]);
    } else {
        std::memcpy(impl.host_in, input, count * sizeof(float));
    }
    std::size_t const in_bytes = count * element_size(impl.input_type, spec().input_name);
    cuda_check(cudaMemcpyAsync(impl.device_in, impl.host_in, in_bytes, cudaMemcpyHostToDevice, stream_),
               "cudaMemcpyAsync (input)");
    infer_from_device(depth);
}

void TrtRunner::infer_from_device(float* depth) {
    enqueue();
    copy_output(depth);
}

void TrtRunner::copy_output(float* depth) {
    Impl& impl = *impl_;
    std::size_t const count = output_elements();
    std::size_t const out_bytes = count * element_size(impl.output_type, spec().output_name);
    cuda_check(cudaMemcpyAsync(impl.host_out, impl.device_out, out_bytes, cudaMemcpyDeviceToHost, stream_),
               "cudaMemcpyAsync (output)");
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (impl.output_type == DataType::kHALF) {
        __half const* host = static_cast<__half const*>(impl.host_out);
        for (std::size_t i = 0; i < count; ++i) depth[i] = __half2float(host[i]);
    } else {
        std::memcpy(depth, impl.host_out, count * sizeof(float));
    }
}

}  // namespace edgedepth
