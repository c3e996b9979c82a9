// ModelSpec: the C++ reader of edgedepth.spec.ModelSpec (the JSON written into the ONNX metadata
// and the engine sidecar), with the same refusals and messages as Python.
#pragma once

#include <array>
#include <string>

namespace edgedepth {

/// Every network edgedepth builds downsamples by 32 (edgedepth.spec.SIZE_MULTIPLE).
constexpr int kSizeMultiple = 32;
/// Largest input side a spec may name (edgedepth.spec.MAX_INPUT_SIDE).
constexpr int kMaxInputSide = 8192;

struct ModelSpec {
  int height = 0;
  int width = 0;
  double min_depth = 0.1;
  double max_depth = 10.0;
  std::array<double, 3> mean{0.485, 0.456, 0.406};
  std::array<double, 3> std{0.229, 0.224, 0.225};
  std::string color_order = "RGB";
  std::string input_name = "input";
  std::string output_name = "depth";
  std::string layout = "NCHW";
  std::string output_unit = "m";
  std::string architecture = "resnet18";
  bool dynamic = false;
  std::string config_hash;
  std::string edgedepth_version;
  /// arch_options and provenance, kept as compact JSON text (the runtime does not read them).
  std::string arch_options_json = "{}";
  std::string provenance_json = "{}";

  /// Parse ModelSpec.to_json() output; SpecError naming the first bad field (Python's wording).
  static ModelSpec from_json(const std::string& text);
  /// Read a JSON file holding one spec; SpecError when unreadable or invalid.
  static ModelSpec from_file(const std::string& path);
  /// SpecError naming the first inconsistent field (ModelSpec.validate).
  void validate() const;
};

/// SpecError unless `value` (the input `name`: "height" or "width") is a positive multiple of 32,
/// at most kMaxInputSide (edgedepth.spec.check_input_side).
void check_input_side(const std::string& name, long long value);

}  // namespace edgedepth
