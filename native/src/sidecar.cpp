// Engine sidecar reading and the compatibility rules: mirrors edgedepth/trt/sidecar.py (from_dict,
// _check_format, _checked, compatibility_problem, check_compatible) check for check, message for message.
#include "edgedepth/sidecar.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <sys/stat.h>
#include <utility>

#include "edgedepth/errors.hpp"
#include "json_util.hpp"

namespace edgedepth {

using detail::Json;

namespace {

const std::string kRebuild = "rebuild the engine with `depth-export engine`";

/// A field's check and how to name what it should be (sidecar.py Kind).
struct Kind {
  std::function<bool(const Json&)> check;
  std::string expected;
};

bool is_number(const Json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

const Kind kAny{[](const Json&) { return true; }, "anything"};
const Kind kText{[](const Json& v) { return v.is_string(); }, "a string"};
const Kind kOptionalText{[](const Json& v) { return v.is_null() || v.is_string(); }, "a string or null"};
const Kind kNumber{is_number, "a number"};
const Kind kOptionalNumber{[](const Json& v) { return v.is_null() || is_number(v); }, "a number or null"};
const Kind kOptionalIndex{[](const Json& v) { return v.is_null() || v.is_number_integer(); }, "a whole number or null"};
const Kind kFlag{[](const Json& v) { return v.is_boolean(); }, "true or false"};
const Kind kOptionalFlag{[](const Json& v) { return v.is_null() || v.is_boolean(); }, "true, false or null"};
const Kind kObject{[](const Json& v) { return v.is_object(); }, "a JSON object"};
const Kind kOptionalObject{[](const Json& v) { return v.is_null() || v.is_object(); }, "a JSON object"};
const Kind kNames{[](const Json& v) {
                    return v.is_array() && std::all_of(v.begin(), v.end(), [](const Json& i) { return i.is_string(); });
                  },
                  "a list of strings"};
const Kind kPrecision{[](const Json& v) { return v == "fp32" || v == "fp16" || v == "int8"; }, "one of fp32, fp16, int8"};

/// `data[name]` when it passes `kind`; `fallback` when absent (if given); else SidecarError
/// naming the field, what it holds and what it should hold (sidecar.py _checked).
Json checked(const Json& data, const std::string& name, const Kind& kind, const std::string& where,
             const std::string& prefix = "", const std::optional<Json>& fallback = std::nullopt) {
  const auto found = data.find(name);
  if (found == data.end()) {
    if (!fallback) throw SidecarError(where + " lacks the field " + prefix + name + "; " + kRebuild);
    return *fallback;
  }
  if (!kind.check(*found)) {
    throw SidecarError(where + ": field " + prefix + name + " is " + detail::py_repr60(*found) + " (" +
                       detail::py_type(*found) + "), expected " + kind.expected + "; " + kRebuild);
  }
  return *found;
}

void check_format(const Json& data, const std::string& where) {
  if (!data.is_object() || !data.contains("format") || data["format"] != kSidecarFormat) {
    const Json found = data.is_object() ? (data.contains("format") ? data["format"] : Json()) : Json(detail::py_type(data));
    throw SidecarError(where + " is not an edgedepth engine sidecar (format " + detail::py_repr(found) +
                       "); rebuild the engine with `depth-export engine`");
  }
  const Json version = data.contains("format_version") ? data["format_version"] : Json(0);
  if (!version.is_number_integer() || version.get<long long>() < 0) {
    throw SidecarError(where + " has format_version " + detail::py_repr(version) + ", not a number (a whole number like " +
                       std::to_string(kSidecarFormatVersion) + "); rebuild the engine");
  }
  if (version.get<long long>() > kSidecarFormatVersion) {
    throw SidecarError(where + " has sidecar format " + version.dump() + "; this edgedepth reads up to " +
                       std::to_string(kSidecarFormatVersion) + ": upgrade edgedepth");
  }
}

std::optional<std::string> optional_text(const Json& v) {
  return v.is_string() ? std::optional<std::string>(v.get<std::string>()) : std::nullopt;
}

std::vector<std::string> names(const Json& v) { return v.get<std::vector<std::string>>(); }

BuildOptions parse_build_options(const Json& data, const std::string& where) {
  // Known fields in sidecar.py's _OPTION_KINDS order; unknown ones (a newer edgedepth) are ignored.
  const std::vector<std::pair<std::string, const Kind*>> kinds = {
      {"precision", &kPrecision}, {"workspace_gib", &kOptionalNumber}, {"dla_core", &kOptionalIndex},
      {"version_compatible", &kFlag}, {"hardware_compatibility", &kText}, {"calibration_cache_sha256", &kOptionalText},
      {"strongly_typed", &kFlag}, {"builder_flags", &kNames}, {"cleared_flags", &kNames}, {"fp32_nodes", &kNames},
      {"unquantized_precision", &kOptionalText}};
  for (const auto& [name, kind] : kinds) {
    if (data.contains(name)) checked(data, name, *kind, where, "build_options.");
  }
  if (!data.contains("precision")) throw SidecarError(where + " lacks the field build_options.precision; " + kRebuild);
  BuildOptions options;
  options.precision = data["precision"].get<std::string>();
  if (data.contains("workspace_gib") && !data["workspace_gib"].is_null()) options.workspace_gib = data["workspace_gib"].get<double>();
  if (data.contains("dla_core") && !data["dla_core"].is_null()) options.dla_core = data["dla_core"].get<int>();
  options.version_compatible = data.value("version_compatible", false);
  options.hardware_compatibility = data.value("hardware_compatibility", std::string("none"));
  if (data.contains("calibration_cache_sha256")) options.calibration_cache_sha256 = optional_text(data["calibration_cache_sha256"]);
  options.strongly_typed = data.value("strongly_typed", false);
  if (data.contains("builder_flags")) options.builder_flags = names(data["builder_flags"]);
  if (data.contains("cleared_flags")) options.cleared_flags = names(data["cleared_flags"]);
  if (data.contains("fp32_nodes")) options.fp32_nodes = names(data["fp32_nodes"]);
  if (data.contains("unquantized_precision")) options.unquantized_precision = optional_text(data["unquantized_precision"]);
  return options;
}

GpuInfo gpu_info(const Json& data, const std::string& where) {
  const std::vector<std::pair<std::string, const Kind*>> kinds = {
      {"name", &kText}, {"compute_capability", &kText}, {"integrated", &kOptionalFlag}, {"machine", &kOptionalText},
      {"system", &kOptionalText}};
  for (const auto& [name, kind] : kinds) {
    const bool required = name == "name" || name == "compute_capability";
    checked(data, name, *kind, where, "gpu.", required ? std::nullopt : std::optional<Json>(Json()));
  }
  GpuInfo gpu;
  gpu.name = data["name"].get<std::string>();
  gpu.compute_capability = data["compute_capability"].get<std::string>();
  if (data.contains("integrated") && data["integrated"].is_boolean()) gpu.integrated = data["integrated"].get<bool>();
  gpu.machine = optional_text(data.value("machine", Json())).value_or("");
  gpu.system = optional_text(data.value("system", Json())).value_or("");
  return gpu;
}

// ------------------------------------------------------------------------------ compatibility

/// "10.3.0.30" -> {10, 3, 0}: pip wheels print three fields, JetPack packages four.
std::vector<int> release(const std::string& version) {
  std::vector<int> fields;
  std::stringstream parts(version);
  std::string part;
  for (int i = 0; i < 3 && std::getline(parts, part, '.'); ++i) {
    if (part.empty() || !std::all_of(part.begin(), part.end(), [](unsigned char c) { return std::isdigit(c); })) break;
    fields.push_back(std::stoi(part));
  }
  return fields;
}

/// Major-version steps a version-compatible plan survives (sidecar.py _VERSION_COMPATIBLE_STEPS:
/// TensorRT 10.16.1 version-compatibility page; 8 -> 11 unsupported per the 11.4.1 support matrix).
bool compatible_step(int built, int running) {
  static const std::set<std::pair<int, int>> steps = {{8, 8}, {9, 9}, {10, 10}, {11, 11}, {8, 9}, {8, 10}, {9, 10}, {10, 11}};
  return steps.count({built, running}) > 0;
}

std::optional<std::string> version_problem(const std::string& built, const std::string& running, bool version_compatible) {
  const std::vector<int> built_release = release(built), running_release = release(running);
  if (built_release == running_release) return std::nullopt;
  if (version_compatible) {
    const bool later = running_release >= built_release;
    if (later && !built_release.empty() && !running_release.empty() &&
        compatible_step(built_release[0], running_release[0])) {
      return std::nullopt;
    }
    return "the version-compatible engine was built with TensorRT " + built + ", which " + running +
           " cannot run (such engines run on the same or a later TensorRT, one major step at most: 8->9, 8->10, "
           "9->10, 10->11)";
  }
  return "the engine was built with TensorRT " + built + " but this machine has " + running;
}

/// Plans never move across CPU architectures, operating systems, or between Jetson and desktop.
std::optional<std::string> platform_problem(const GpuInfo& built, const GpuInfo& running) {
  const std::pair<const char*, std::pair<std::string, std::string>> checks[] = {
      {"CPU architecture", {built.machine, running.machine}}, {"OS", {built.system, running.system}}};
  for (const auto& [label, values] : checks) {
    if (!values.first.empty() && !values.second.empty() && values.first != values.second) {
      return "the engine was built on " + values.first + " and this machine is " + values.second + " (" + label +
             "); TensorRT plans are not portable across platforms";
    }
  }
  if (built.integrated && running.integrated && *built.integrated != *running.integrated) {
    return "the engine was built for a " + built.platform_label() + " and this is a " + running.platform_label() +
           "; TensorRT plans are not portable between Jetson and desktop GPUs";
  }
  return std::nullopt;
}

/// Python's tuple(int(part) for part in capability.split(".")), () when a part is not a number.
std::vector<int> compute(const std::string& capability) {
  std::vector<int> parts;
  std::stringstream text(capability);
  std::string part;
  while (std::getline(text, part, '.')) {
    const auto first = part.find_first_not_of(" \t\n\r\f\v"), last = part.find_last_not_of(" \t\n\r\f\v");
    if (first == std::string::npos) return {};
    part = part.substr(first, last - first + 1);
    const std::size_t digits = (part[0] == '+' || part[0] == '-') ? 1 : 0;
    if (part.size() == digits ||
        !std::all_of(part.begin() + digits, part.end(), [](unsigned char c) { return std::isdigit(c); })) {
      return {};
    }
    parts.push_back(std::stoi(part));
  }
  if (!capability.empty() && capability.back() == '.') return {};  // "8." -> int("") fails in Python
  return parts;
}

/// `none` and `same-compute-capability` plans need the builder's compute capability; `ampere+`
/// plans need a discrete GPU of compute 8.0 or newer (not supported on JetPack).
std::optional<std::string> gpu_problem(const GpuInfo& built, const std::string& hardware, const GpuInfo& running) {
  if (hardware == "ampere+") {
    if (compute(running.compute_capability) >= std::vector<int>{8, 0} && running.integrated != true) return std::nullopt;
    return "the engine was built hardware-compatible for discrete Ampere and newer GPUs (compute 8.0+, not Jetson) "
           "but this GPU is " + running.name + " (compute " + running.compute_capability + ")";
  }
  if (built.compute_capability != running.compute_capability) {
    return "the engine was built for " + built.name + " (compute " + built.compute_capability + ") but this GPU is " +
           running.name + " (compute " + running.compute_capability + ")";
  }
  return std::nullopt;
}

std::string folded(const std::string& text) {
  const auto first = text.find_first_not_of(" \t\n\r\f\v"), last = text.find_last_not_of(" \t\n\r\f\v");
  std::string out = first == std::string::npos ? "" : text.substr(first, last - first + 1);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

std::string GpuInfo::platform_label() const {
  const char* kind = !integrated ? "GPU" : (*integrated ? "Jetson/integrated GPU" : "discrete GPU");
  return (system.empty() ? "?" : system) + " " + (machine.empty() ? "?" : machine) + " " + kind;
}

EngineSidecar EngineSidecar::from_json(const std::string& text, const std::string& where) {
  Json data;
  try {
    data = Json::parse(text);
  } catch (const Json::exception& exc) {
    throw SidecarError(where + " is not readable JSON (" + exc.what() + "); " + kRebuild);
  }
  check_format(data, where);
  EngineSidecar sidecar;
  sidecar.format_version = data.value("format_version", 0);
  try {
    sidecar.model_spec = detail::model_spec_from_json(checked(data, "model_spec", kAny, where));
  } catch (const SpecError& exc) {
    throw SidecarError(where + " holds an invalid model spec (" + exc.what() + "); rebuild the engine");
  }
  sidecar.precision = checked(data, "precision", kPrecision, where).get<std::string>();
  Json options = checked(data, "build_options", kOptionalObject, where, "", Json());
  if (options.is_null() || options.empty()) options = Json{{"precision", sidecar.precision}};
  sidecar.tensorrt_version = checked(data, "tensorrt_version", kText, where).get<std::string>();
  sidecar.tensorrt_generation = checked(data, "tensorrt_generation", kText, where, "", Json("")).get<std::string>();
  sidecar.gpu = gpu_info(checked(data, "gpu", kObject, where), where);
  const Json shapes = checked(data, "shapes", kOptionalObject, where, "", Json());
  sidecar.shapes_json = shapes.is_null() ? "{}" : shapes.dump();
  const Json source = checked(data, "source_onnx", kOptionalObject, where, "", Json());
  if (source.is_object() && source.contains("name") && source["name"].is_string()) {
    sidecar.source_onnx_name = source["name"].get<std::string>();
  }
  sidecar.build_options = parse_build_options(options, where);
  sidecar.build_seconds = checked(data, "build_seconds", kNumber, where, "", Json(0.0)).get<double>();
  sidecar.engine_sha256 = checked(data, "engine_sha256", kText, where, "", Json("")).get<std::string>();
  sidecar.cache_key = checked(data, "cache_key", kText, where, "", Json("")).get<std::string>();
  sidecar.built_at = checked(data, "built_at", kText, where, "", Json("")).get<std::string>();
  sidecar.edgedepth_version = checked(data, "edgedepth_version", kText, where, "", Json("")).get<std::string>();
  return sidecar;
}

std::string sidecar_path(const std::string& engine_path) { return engine_path + ".json"; }

EngineSidecar read_sidecar(const std::string& engine_path) {
  const std::string path = sidecar_path(engine_path);
  struct stat info {};
  if (stat(path.c_str(), &info) != 0 || !S_ISREG(info.st_mode)) {
    throw SidecarError(path + " not found: the engine's provenance (spec, TensorRT version, GPU) lives there; "
                       "rebuild the engine with `depth-export engine`, which writes both");
  }
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  if (!file) throw SidecarError(path + " is not readable JSON (cannot read the file); " + kRebuild);
  return EngineSidecar::from_json(text.str(), path);
}

std::optional<std::string> compatibility_problem(const EngineSidecar& sidecar, const std::string& trt_version,
                                                 const GpuInfo& gpu) {
  const BuildOptions& options = sidecar.build_options;
  if (auto problem = version_problem(sidecar.tensorrt_version, trt_version, options.version_compatible)) return problem;
  if (auto problem = platform_problem(sidecar.gpu, gpu)) return problem;
  return gpu_problem(sidecar.gpu, options.hardware_compatibility, gpu);
}

std::string rebuild_command(const EngineSidecar& sidecar, const std::string& engine_path) {
  const std::string onnx = sidecar.source_onnx_name.empty() ? "MODEL.onnx" : sidecar.source_onnx_name;
  std::string command = "depth-export engine --onnx " + onnx + " --output " + engine_path + " --precision " +
                        sidecar.precision;
  const BuildOptions& options = sidecar.build_options;
  if (options.version_compatible) command += " --version-compatible";
  if (!options.hardware_compatibility.empty() && options.hardware_compatibility != "none") {
    command += " --hardware-compatibility " + options.hardware_compatibility;
  }
  if (options.dla_core) command += " --dla-core " + std::to_string(*options.dla_core);
  return command;
}

std::vector<std::string> check_compatible(const EngineSidecar& sidecar, const std::string& trt_version,
                                          const GpuInfo& gpu, const std::string& engine_path) {
  const std::string rebuild = rebuild_command(sidecar, engine_path);
  if (const auto problem = compatibility_problem(sidecar, trt_version, gpu)) {
    throw DeviceError("engine " + engine_path + ": " + *problem + ": rebuild it here from the same ONNX: `" + rebuild +
                      "`");
  }
  if (folded(sidecar.gpu.name) != folded(gpu.name)) {
    return {"engine " + engine_path + " was built on " + sidecar.gpu.name + " and runs on " + gpu.name +
            " (same compute " + gpu.compute_capability + "): it loads, but its kernels were tuned for the other GPU; " +
            "for best speed `" + rebuild + "`"};
  }
  return {};
}

std::string deserialize_failure_message(const std::string& engine_path, const std::vector<std::string>& log_lines,
                                        const EngineSidecar* sidecar) {
  std::string reason = "TensorRT logged no reason";
  for (const std::string& line : log_lines) {
    if (line.find_first_not_of(" \t\n\r\f\v") != std::string::npos) reason = line;
  }
  const std::string fix = sidecar ? "rebuild it: `" + rebuild_command(*sidecar, engine_path) + "`"
                                  : "rebuild it with depth-export engine";
  return "TensorRT could not deserialise " + engine_path + " (" + reason +
         "); the file is damaged or its sidecar does not match it: " + fix;
}

}  // namespace edgedepth
