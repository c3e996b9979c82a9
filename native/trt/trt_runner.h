// edgedepth::TrtRunner: a TensorRT engine built by `depth-export engine`, run on one CUDA stream.
//
// The engine's sidecar (model.engine.json) is read and checked against this machine (TensorRT
// release, GPU compute capability, platform) before the plan is deserialised, with the same
// refusals as the Python runtime (edgedepth/trt/sidecar.py). Input and output go through pinned
// host buffers and asynchronous copies on the runner's stream; the enqueue call depends on the
// TensorRT generation (see trt_runner.cpp). No OpenCV here: this file is compiled against every
// generation's headers by ctest, on machines without TensorRT.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "edgedepth/errors.hpp"
#include "edgedepth/sidecar.hpp"

namespace edgedepth {

//! A runtime failure of the TensorRT tier: one line saying what happened and what to do.
class TrtError : public Error {
public:
    using Error::Error;
};

//! "8", "10" or "11": the generation of the TensorRT headers this file was compiled against,
//! by the rules of edgedepth/trt/generation.py (9.x runs like 10.x).
char const* trt_generation();

//! The TensorRT library actually loaded, "major.minor.patch" (getInferLibVersion()).
std::string trt_library_version();

//! The GPU and host the engine is checked against (what the Python runtime's query_gpu() reports).
GpuInfo query_gpu(int device = 0);

class TrtRunner {
public:
    //! Reads `engine_path` and its sidecar, refuses an engine built for another TensorRT, GPU or
    //! platform, deserialises it and prepares buffers for the sidecar's nominal input shape.
    explicit TrtRunner(std::string const& engine_path, int device = 0);
    ~TrtRunner();
    TrtRunner(TrtRunner const&) = delete;
    TrtRunner& operator=(TrtRunner const&) = delete;

    EngineSidecar const& sidecar() const { return sidecar_; }
    ModelSpec const& spec() const { return sidecar_.model_spec; }
    //! e.g. "tensorrt 10.3.0 (fp16, native)": what depth-run's stats call backend_detail.
    std::string detail() const;
    //! Warnings from the sidecar check (same compute capability, another GPU name).
    std::vector<std::string> const& warnings() const { return warnings_; }
    cudaStream_t stream() const { return stream_; }

    //! Elements of one input (1x3xHxW) and one output (1x1xHxW).
    std::size_t input_elements() const;
    std::size_t output_elements() const;
    int output_height() const;
    int output_width() const;

    //! Host float32 NCHW input -> host float32 depth (metres): H2D copy, enqueue and D2H copy
    //! on the runner's stream, then one synchronisation.
    void infer(float const* input, float* depth);
    //! The device input buffer, for a CUDA preprocessing kernel that writes the network input in
    //! place on stream(); only for float32-input engines (nullptr otherwise).
    float* device_input();
    //! As infer(), for an input already written into device_input() on stream().
    void infer_from_device(float* depth);

private:
    struct Impl;
    void load(std::vector<char> const& plan);
    void prepare_buffers();
    void allocate_buffers();
    void enqueue();
    void copy_output(float* depth);

    std::string engine_path_;
    EngineSidecar sidecar_;
    std::vector<std::string> warnings_;
    std::unique_ptr<Impl> impl_;
    cudaStream_t stream_ = nullptr;
};

}  // namespace edgedepth
