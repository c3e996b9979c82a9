// The engine sidecar (model.engine.json) in C++: the reader of edgedepth/trt/sidecar.py, with the
// same refusals (format, format version, field types, model spec) and the same compatibility rules
// (TensorRT release, platform, GPU compute capability) and wording.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "edgedepth/spec.hpp"

namespace edgedepth {

constexpr const char* kSidecarFormat = "edgedepth-engine";
/// Newest sidecar format this reader knows (edgedepth.trt.sidecar.SIDECAR_FORMAT_VERSION).
constexpr int kSidecarFormatVersion = 2;

/// The GPU and host an engine is built for or runs on (edgedepth.trt.platform.GpuInfo).
struct GpuInfo {
  std::string name;
  std::string compute_capability;  ///< "8.7"
  std::optional<bool> integrated;  ///< true on Jetson; unknown in old sidecars
  std::string machine;             ///< "aarch64", "x86_64" (Python's platform.machine())
  std::string system;              ///< "Linux" (platform.system())
  /// "Linux aarch64 Jetson/integrated GPU", as the Python messages name a platform.
  std::string platform_label() const;
};

/// How the engine was built (the sidecar's build_options).
struct BuildOptions {
  std::string precision;
  std::optional<double> workspace_gib;
  std::optional<int> dla_core;
  bool version_compatible = false;
  std::string hardware_compatibility = "none";
  std::optional<std::string> calibration_cache_sha256;
  bool strongly_typed = false;
  std::vector<std::string> builder_flags;
  std::vector<std::string> cleared_flags;
  std::vector<std::string> fp32_nodes;
  std::optional<std::string> unquantized_precision;
};

struct EngineSidecar {
  int format_version = 0;
  ModelSpec model_spec;
  std::string tensorrt_version;
  std::string tensorrt_generation;
  GpuInfo gpu;
  std::string precision;  ///< fp32, fp16 or int8
  std::string shapes_json = "{}";
  std::string source_onnx_name;  ///< source_onnx.name, "" when absent
  BuildOptions build_options;
  double build_seconds = 0;
  std::string engine_sha256;
  std::string cache_key;
  std::string built_at;
  std::string edgedepth_version;

  /// Parse sidecar JSON text; SidecarError naming `where` and the first bad field.
  static EngineSidecar from_json(const std::string& text, const std::string& where = "the sidecar");
};

/// "model.engine" -> "model.engine.json".
std::string sidecar_path(const std::string& engine_path);
/// The sidecar of `engine_path`; SidecarError when missing, unreadable or invalid.
EngineSidecar read_sidecar(const std::string& engine_path);

/// Why an engine with `sidecar` will not load on `gpu` with TensorRT `trt_version` (nullopt when it should).
std::optional<std::string> compatibility_problem(const EngineSidecar& sidecar, const std::string& trt_version,
                                                 const GpuInfo& gpu);
/// The depth-export command that rebuilds this engine with the options it was built with.
std::string rebuild_command(const EngineSidecar& sidecar, const std::string& engine_path);
/// DeviceError when the engine cannot run here; the warnings for soft mismatches (another GPU name).
std::vector<std::string> check_compatible(const EngineSidecar& sidecar, const std::string& trt_version,
                                          const GpuInfo& gpu, const std::string& engine_path);
/// One line for a deserialisation that failed, quoting TensorRT's last log line.
std::string deserialize_failure_message(const std::string& engine_path, const std::vector<std::string>& log_lines,
                                        const EngineSidecar* sidecar);

}  // namespace edgedepth
