// Engine sidecars: parsing, refusals and the compatibility rules of edgedepth/trt/sidecar.py.
// Without arguments: checks that need no Python. With FIXTURE_DIR (make_fixtures.py): every
// malformed sidecar and every (built, running) platform pair must give Python's exact message.
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.hpp"
#include "edgedepth/errors.hpp"
#include "edgedepth/sidecar.hpp"

namespace ed = edgedepth;
using nlohmann::json;

namespace {

json base() {
  return json::parse(R"({
    "format": "edgedepth-engine", "format_version": 2,
    "model_spec": {"height": 256, "width": 320, "color_order": "RGB"},
    "tensorrt_version": "10.3.0.30", "tensorrt_generation": "10",
    "gpu": {"name": "Orin", "compute_capability": "8.7", "integrated": true, "machine": "aarch64", "system": "Linux"},
    "precision": "fp16", "shapes": {"input": [1, 3, 256, 320]}, "source_onnx": {"name": "model.onnx"},
    "build_options": {"precision": "fp16", "version_compatible": false, "hardware_compatibility": "none",
                      "dla_core": null, "builder_flags": ["FP16"]},
    "build_seconds": 12.5, "engine_sha256": "ab", "cache_key": "cd", "built_at": "2025-01-01T00:00:00+00:00",
    "edgedepth_version": "0.3.0"})");
}

ed::GpuInfo gpu(const std::string& name, const std::string& compute, bool integrated, const std::string& machine) {
  ed::GpuInfo info;
  info.name = name;
  info.compute_capability = compute;
  info.integrated = integrated;
  info.machine = machine;
  info.system = "Linux";
  return info;
}

void standalone() {
  const ed::EngineSidecar sidecar = ed::EngineSidecar::from_json(base().dump(), "m.engine.json");
  CHECK_EQ(sidecar.model_spec.width, 320);
  CHECK_EQ(sidecar.tensorrt_version, "10.3.0.30");
  CHECK_EQ(sidecar.gpu.compute_capability, "8.7");
  CHECK(sidecar.gpu.integrated == true);
  CHECK_EQ(sidecar.build_options.builder_flags.size(), std::size_t(1));
  CHECK_EQ(sidecar.source_onnx_name, "model.onnx");
  CHECK_EQ(ed::sidecar_path("dir/model.engine"), "dir/model.engine.json");

  const ed::GpuInfo orin = gpu("Orin", "8.7", true, "aarch64");
  CHECK(ed::check_compatible(sidecar, "10.3.0", orin, "m.engine").empty());
  CHECK_THROWS(ed::DeviceError, ed::check_compatible(sidecar, "8.6.2", orin, "m.engine"),
               "engine m.engine: the engine was built with TensorRT 10.3.0.30 but this machine has 8.6.2: rebuild it "
               "here from the same ONNX: `depth-export engine --onnx model.onnx --output m.engine --precision fp16`");
  CHECK_THROWS(ed::DeviceError, ed::check_compatible(sidecar, "10.3.0", gpu("RTX", "8.9", false, "aarch64"), "m"),
               "the engine was built for a Linux aarch64 Jetson/integrated GPU and this is a Linux aarch64 discrete GPU");
  const auto warnings = ed::check_compatible(sidecar, "10.3.0", gpu("Jetson AGX Orin", "8.7", true, "aarch64"), "m");
  CHECK(warnings.size() == 1 && warnings[0].find("kernels were tuned for the other GPU") != std::string::npos);

  CHECK_THROWS(ed::SidecarError, ed::EngineSidecar::from_json("{", "m.engine.json"), "m.engine.json is not readable JSON (");
  CHECK_THROWS(ed::SidecarError, ed::read_sidecar("/nonexistent/model.engine"),
               "/nonexistent/model.engine.json not found: the engine's provenance (spec, TensorRT version, GPU) lives there");
  json newer = base();
  newer["format_version"] = 3;
  CHECK_THROWS(ed::SidecarError, ed::EngineSidecar::from_json(newer.dump(), "w"),
               "w has sidecar format 3; this edgedepth reads up to 2: upgrade edgedepth");
  const std::string path = "test_sidecar_tmp.engine";
  std::ofstream(path + ".json") << base().dump();
  CHECK_EQ(ed::read_sidecar(path).model_spec.height, 256);
  std::remove((path + ".json").c_str());
  CHECK_EQ(ed::deserialize_failure_message("m.engine", {"first", "  "}, nullptr),
           "TensorRT could not deserialise m.engine (first); the file is damaged or its sidecar does not match it: "
           "rebuild it with depth-export engine");
}

ed::GpuInfo gpu_from(const json& data) {
  ed::GpuInfo info;
  info.name = data["name"];
  info.compute_capability = data["compute_capability"];
  if (data["integrated"].is_boolean()) info.integrated = data["integrated"].get<bool>();
  info.machine = data["machine"];
  info.system = data["system"];
  return info;
}

void same_as_python(const std::string& dir) {
  const json manifest = json::parse(edgedepth_test::read_text(dir + "/manifest.json"));
  int parsed = 0, compared = 0;
  for (const json& c : manifest["sidecar"]) {
    std::string error;
    try {
      ed::EngineSidecar::from_json(c["text"].get<std::string>(), c["where"]);
    } catch (const ed::SidecarError& exc) {
      error = exc.what();
    }
    const std::string expected = c["error"].is_null() ? "" : c["error"].get<std::string>();
    if (error != expected) {
      edgedepth_test::fail(__FILE__, __LINE__, "sidecar case '" + c["name"].get<std::string>() + "': C++ says [" +
                                                   error + "], Python says [" + expected + "]");
    }
    ++parsed;
  }
  for (const json& c : manifest["compatibility"]) {
    const ed::EngineSidecar sidecar = ed::EngineSidecar::from_json(c["sidecar"].get<std::string>());
    std::string error;
    std::vector<std::string> warnings;
    try {
      warnings = ed::check_compatible(sidecar, c["trt"], gpu_from(c["gpu"]), c["engine"]);
    } catch (const ed::DeviceError& exc) {
      error = exc.what();
    }
    const std::string expected = c["error"].is_null() ? "" : c["error"].get<std::string>();
    if (error != expected || warnings != c["warnings"].get<std::vector<std::string>>()) {
      edgedepth_test::fail(__FILE__, __LINE__, "compatibility with TensorRT " + c["trt"].get<std::string>() + " on " +
                                                   c["gpu"].dump() + ": C++ says [" + error + "], Python says [" +
                                                   expected + "]");
    }
    ++compared;
  }
  std::printf("sidecar: %d parse cases and %d compatibility cases give Python's messages\n", parsed, compared);
  CHECK(parsed > 20 && compared > 100);
}

}  // namespace

int main(int argc, char** argv) {
  standalone();
  if (argc > 1) same_as_python(argv[1]);
  return edgedepth_test::finish("test_sidecar");
}
