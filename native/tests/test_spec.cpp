// ModelSpec reading: the fields and the refusals of edgedepth/spec.py, with its wording.
#include <string>

#include "check.hpp"
#include "edgedepth/errors.hpp"
#include "edgedepth/spec.hpp"

using edgedepth::ModelSpec;
using edgedepth::SpecError;

namespace {

const std::string kFull =
    R"({"arch_options": {"decoder": "light"}, "architecture": "resnet18", "color_order": "BGR", "config_hash": "abc",)"
    R"( "dynamic": false, "edgedepth_version": "0.3.0", "height": 256, "input_name": "input", "layout": "NCHW",)"
    R"( "max_depth": 80.0, "mean": [0.5, 0.25, 0.125], "min_depth": 0.5, "output_name": "depth",)"
    R"( "output_unit": "m", "provenance": {"checkpoint_sha256": "00"}, "std": [0.5, 0.5, 0.25], "width": 320})";

/// kFull with one field's JSON text replaced.
std::string with(const std::string& field, const std::string& value) {
  std::string text = kFull;
  const std::string key = "\"" + field + "\": ";
  const std::size_t start = text.find(key) + key.size();
  std::size_t end = start;
  int depth = 0;
  for (; end < text.size(); ++end) {
    const char c = text[end];
    if (c == '[' || c == '{') ++depth;
    if (c == ']' || c == '}') {
      if (depth == 0) break;
      --depth;
    }
    if (c == ',' && depth == 0) break;
  }
  return text.replace(start, end - start, value);
}

void reads_every_field() {
  const ModelSpec spec = ModelSpec::from_json(kFull);
  CHECK_EQ(spec.height, 256);
  CHECK_EQ(spec.width, 320);
  CHECK_EQ(spec.min_depth, 0.5);
  CHECK_EQ(spec.max_depth, 80.0);
  CHECK_EQ(spec.mean[2], 0.125);
  CHECK_EQ(spec.std[2], 0.25);
  CHECK_EQ(spec.color_order, "BGR");
  CHECK_EQ(spec.config_hash, "abc");
  CHECK_EQ(spec.edgedepth_version, "0.3.0");
  CHECK_EQ(spec.arch_options_json, R"({"decoder":"light"})");
  // Missing optional fields take ModelSpec's defaults.
  const ModelSpec minimal = ModelSpec::from_json(R"({"height": 64, "width": 96})");
  CHECK_EQ(minimal.color_order, "RGB");
  CHECK_EQ(minimal.min_depth, 0.1);
  CHECK_EQ(minimal.max_depth, 10.0);
  CHECK_EQ(minimal.mean[0], 0.485);
  CHECK_EQ(minimal.std[2], 0.225);
  // Integers are numbers too.
  CHECK_EQ(ModelSpec::from_json(with("max_depth", "80")).max_depth, 80.0);
}

void refuses_what_python_refuses() {
  CHECK_THROWS(SpecError, ModelSpec::from_json("[1, 2]"), "model spec must be a JSON object (field -> value), got list [1, 2]");
  CHECK_THROWS(SpecError, ModelSpec::from_json("{\"height\": 64,"), "model spec is not valid JSON (");
  CHECK_THROWS(SpecError, ModelSpec::from_json(R"({"height": 64, "width": 64, "zoom": 1, "spec_version": 9})"),
               "model spec has unknown keys ['spec_version', 'zoom']: it was written by a newer or different tool; "
               "expected only ['arch_options', 'architecture', ");
  CHECK_THROWS(SpecError, ModelSpec::from_json(R"({"width": 64})"),
               "model spec lacks required keys ['height']; got keys ['width']");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("max_depth", "\"far\"")),
               "model spec field max_depth is 'far' (str), expected a number; the file carrying the spec is corrupt");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("min_depth", "true")),
               "model spec field min_depth is True (bool), expected a number");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("mean", "[0.5, 0.5]")),
               "model spec field mean is [0.5, 0.5] (list), expected a list of 3 numbers");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("std", "\"abc\"")),
               "model spec field std is 'abc' (str), expected a list of 3 numbers");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("input_name", "7")),
               "model spec field input_name is 7 (int), expected a string");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("provenance", "[]")),
               "model spec field provenance is [] (list), expected a JSON object");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("dynamic", "1")),
               "model spec field dynamic is 1 (int), expected true or false");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("height", "250")),
               "input height 250 is not a multiple of 32: the encoder downsamples by 32; use 224 or 256");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("width", "320.0")),
               "input width 320.0 is not a multiple of 32: the encoder downsamples by 32; use 320 or 320");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("width", "\"320\"")), "input width '320' is not a multiple of 32");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("height", "-64")), "input height -64 is not a multiple of 32");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("height", "0")), "use 32 or 32");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("width", "8224")),
               "input width 8224 is beyond the limit: edgedepth models take at most 8192 pixels per side");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("min_depth", "90")),
               "depth range min_depth=90.0, max_depth=80.0 is invalid: expected 0 < min_depth < max_depth (metres)");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("min_depth", "0")), "is invalid: expected 0 < min_depth");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("std", "[0.5, 0, 0.25]")),
               "mean/std must be 3 values each with std > 0, got mean=(0.5, 0.25, 0.125) std=(0.5, 0.0, 0.25)");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("color_order", "\"YUV\"")),
               "color_order 'YUV' is not supported: use 'RGB' or 'BGR'");
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("layout", "\"NHWC\"")),
               "layout 'NHWC' is not supported: edgedepth models take 'NCHW'");
  // Python reads 1e999 as inf and refuses it as not finite; nlohmann refuses it while parsing.
  CHECK_THROWS(SpecError, ModelSpec::from_json(with("max_depth", "1e999")), "model spec is not valid JSON (");
  CHECK_THROWS(SpecError, ModelSpec::from_file("/nonexistent/spec.json"), "/nonexistent/spec.json cannot be read");
}

void checks_sizes_directly() {
  CHECK_THROWS(SpecError, edgedepth::check_input_side("width", 8193), "input width 8193 is not a multiple of 32");
  CHECK_THROWS(SpecError, edgedepth::check_input_side("width", 100), "use 96 or 128");
  edgedepth::check_input_side("height", 8192);
  edgedepth::check_input_side("height", 32);
}

}  // namespace

int main() {
  reads_every_field();
  refuses_what_python_refuses();
  checks_sizes_directly();
  return edgedepth_test::finish("test_spec");
}
