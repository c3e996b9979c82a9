// ModelSpec reading: mirrors edgedepth/spec.py (ModelSpec.from_dict, _check_field_types,
// validate, check_input_side) check for check and message for message.
#include "edgedepth/spec.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "edgedepth/errors.hpp"
#include "json_util.hpp"

namespace edgedepth {

using detail::Json;

namespace {

const std::set<std::string> kKnownFields = {
    "arch_options", "architecture", "color_order", "config_hash", "depth_kind", "dynamic", "edgedepth_version",
    "height", "input_name", "intrinsics", "layout", "max_depth", "mean", "min_depth", "output_name", "output_unit",
    "provenance", "std", "width"};
const char* const kTextFields[] = {"color_order", "input_name", "output_name", "layout", "output_unit",
                                   "architecture", "config_hash", "edgedepth_version", "depth_kind"};
const char* const kMappingFields[] = {"arch_options", "provenance"};

bool is_number(const Json& value) { return value.is_number(); }  // JSON booleans are not numbers

std::string py_float(double value) { return detail::py_repr(Json(value)); }

std::string py_tuple(const std::array<double, 3>& values) {
  return "(" + py_float(values[0]) + ", " + py_float(values[1]) + ", " + py_float(values[2]) + ")";
}

/// `(field, what it should be)` for the first field of the wrong type (spec.py _wrong_field).
bool wrong_field(const Json& spec, std::string* name, std::string* expected) {
  for (const char* field : {"min_depth", "max_depth"}) {
    if (!is_number(spec[field])) return *name = field, *expected = "a number", true;
  }
  for (const char* field : {"mean", "std"}) {
    const Json& value = spec[field];
    const bool ok = value.is_array() && value.size() == 3 &&
                    std::all_of(value.begin(), value.end(), [](const Json& v) { return is_number(v); });
    if (!ok) return *name = field, *expected = "a list of 3 numbers", true;
  }
  for (const char* field : kTextFields) {
    if (!spec[field].is_string()) return *name = field, *expected = "a string", true;
  }
  for (const char* field : kMappingFields) {
    if (!spec[field].is_object()) return *name = field, *expected = "a JSON object", true;
  }
  if (!spec["dynamic"].is_boolean()) return *name = "dynamic", *expected = "true or false", true;
  return false;
}

Json with_defaults(const Json& data) {
  const ModelSpec d;
  Json spec = {
      {"min_depth", d.min_depth}, {"max_depth", d.max_depth}, {"mean", d.mean}, {"std", d.std},
      {"color_order", d.color_order}, {"input_name", d.input_name}, {"output_name", d.output_name},
      {"layout", d.layout}, {"output_unit", d.output_unit}, {"architecture", d.architecture},
      {"arch_options", Json::object()}, {"dynamic", d.dynamic}, {"config_hash", d.config_hash},
      {"edgedepth_version", d.edgedepth_version}, {"provenance", Json::object()}, {"depth_kind", "metric"}};
  for (const auto& item : data.items()) spec[item.key()] = item.value();
  // __post_init__ fills a falsy edgedepth_version with the running version before any check.
  const Json& version = spec["edgedepth_version"];
  if (version.is_null() || version == false || version == 0 || version == "" || version.empty()) {
    spec["edgedepth_version"] = "";
  }
  return spec;
}

[[noreturn]] void not_a_multiple(const std::string& name, const std::string& repr, long long guess) {
  // nearest_valid_sizes: Python's floor division and ceil, both at least 32.
  const long long floor_div = guess >= 0 ? guess / kSizeMultiple : -((-guess + kSizeMultiple - 1) / kSizeMultiple);
  const long long ceil_div = floor_div + (guess % kSizeMultiple != 0);
  const std::string below = std::to_string(std::max<long long>(kSizeMultiple, floor_div * kSizeMultiple));
  const std::string above = std::to_string(std::max<long long>(kSizeMultiple, ceil_div * kSizeMultiple));
  const std::string multiple = std::to_string(kSizeMultiple);
  throw SpecError("input " + name + " " + repr + " is not a multiple of " + multiple + ": the encoder downsamples by " +
                  multiple + "; use " + below + " or " + above);
}

/// check_input_side on whatever JSON value the file holds.
void check_input_side_json(const std::string& name, const Json& value) {
  if (value.is_number_integer() || value.is_number_unsigned()) {
    check_input_side(name, value.get<long long>());
    return;
  }
  long long guess = 0;  // int(value) for int (bool included) and float, else 0
  if (value.is_boolean()) guess = value.get<bool>() ? 1 : 0;
  if (value.is_number_float() && std::fabs(value.get<double>()) < 1e18) guess = static_cast<long long>(value.get<double>());
  not_a_multiple(name, detail::py_repr(value), guess);
}

std::array<double, 3> triple(const Json& value) {
  return {value[0].get<double>(), value[1].get<double>(), value[2].get<double>()};
}

}  // namespace

void check_input_side(const std::string& name, long long value) {
  if (value <= 0 || value % kSizeMultiple) not_a_multiple(name, std::to_string(value), value);
  if (value > kMaxInputSide) {
    throw SpecError("input " + name + " " + std::to_string(value) +
                    " is beyond the limit: edgedepth models take at most " + std::to_string(kMaxInputSide) +
                    " pixels per side; the file naming this size is corrupt or hand-edited: re-export it, or give a "
                    "smaller size");
  }
}

void ModelSpec::validate() const {
  check_input_side("height", height);
  check_input_side("width", width);
  bool finite = std::isfinite(min_depth) && std::isfinite(max_depth);
  for (int i = 0; i < 3; ++i) finite = finite && std::isfinite(mean[i]) && std::isfinite(std[i]);
  if (!finite) {
    throw SpecError("depth range and mean/std must be finite numbers, got min_depth=" + py_float(min_depth) +
                    ", max_depth=" + py_float(max_depth) + ", mean=" + py_tuple(mean) + ", std=" + py_tuple(std) +
                    "; re-export the artifact");
  }
  if (!(0 < min_depth && min_depth < max_depth)) {
    throw SpecError("depth range min_depth=" + py_float(min_depth) + ", max_depth=" + py_float(max_depth) +
                    " is invalid: expected 0 < min_depth < max_depth (metres)");
  }
  if (*std::min_element(std.begin(), std.end()) <= 0) {
    throw SpecError("mean/std must be 3 values each with std > 0, got mean=" + py_tuple(mean) + " std=" + py_tuple(std));
  }
  if (color_order != "RGB" && color_order != "BGR") {
    throw SpecError("color_order " + detail::py_repr(Json(color_order)) + " is not supported: use 'RGB' or 'BGR'");
  }
  if (layout != "NCHW") {
    throw SpecError("layout " + detail::py_repr(Json(layout)) + " is not supported: edgedepth models take 'NCHW'");
  }
}

namespace detail {

ModelSpec model_spec_from_json(const Json& data) {
  if (!data.is_object()) {
    throw SpecError("model spec must be a JSON object (field -> value), got " + py_type(data) + " " + py_repr60(data) +
                    "; the file carrying it is corrupt or was not written by edgedepth: re-export it");
  }
  std::vector<std::string> unknown, missing, keys;
  for (const auto& item : data.items()) {
    keys.push_back(item.key());  // nlohmann objects iterate in sorted key order, like Python's sorted()
    if (!kKnownFields.count(item.key())) unknown.push_back(item.key());
  }
  if (!unknown.empty()) {
    throw SpecError("model spec has unknown keys " + py_list(unknown) +
                    ": it was written by a newer or different tool; expected only " +
                    py_list(std::vector<std::string>(kKnownFields.begin(), kKnownFields.end())));
  }
  for (const char* name : {"height", "width"}) {
    if (!data.contains(name)) missing.emplace_back(name);
  }
  if (!missing.empty()) throw SpecError("model spec lacks required keys " + py_list(missing) + "; got keys " + py_list(keys));

  const Json spec = with_defaults(data);
  std::string name, expected;
  if (wrong_field(spec, &name, &expected)) {
    throw SpecError("model spec field " + name + " is " + py_repr60(spec[name]) + " (" + py_type(spec[name]) +
                    "), expected " + expected + "; the file carrying the spec is corrupt or hand-edited: re-export it");
  }
  check_input_side_json("height", spec["height"]);
  check_input_side_json("width", spec["width"]);

  ModelSpec out;
  out.height = spec["height"].get<int>();
  out.width = spec["width"].get<int>();
  out.min_depth = spec["min_depth"].get<double>();
  out.max_depth = spec["max_depth"].get<double>();
  out.mean = triple(spec["mean"]);
  out.std = triple(spec["std"]);
  out.color_order = spec["color_order"].get<std::string>();
  out.input_name = spec["input_name"].get<std::string>();
  out.output_name = spec["output_name"].get<std::string>();
  out.layout = spec["layout"].get<std::string>();
  out.output_unit = spec["output_unit"].get<std::string>();
  out.architecture = spec["architecture"].get<std::string>();
  out.dynamic = spec["dynamic"].get<bool>();
  out.config_hash = spec["config_hash"].get<std::string>();
  out.edgedepth_version = spec["edgedepth_version"].get<std::string>();
  out.arch_options_json = spec["arch_options"].dump();
  out.provenance_json = spec["provenance"].dump();
  out.validate();
  return out;
}

}  // namespace detail

ModelSpec ModelSpec::from_json(const std::string& text) {
  Json data;
  try {
    data = Json::parse(text);
  } catch (const Json::exception& exc) {  // parse errors, numbers beyond double
    throw SpecError(std::string("model spec is not valid JSON (") + exc.what() + "); re-export the artifact");
  }
  return detail::model_spec_from_json(data);
}

ModelSpec ModelSpec::from_file(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw SpecError(path + " cannot be read: give the path of a model spec JSON file");
  std::ostringstream text;
  text << file.rdbuf();
  try {
    return from_json(text.str());
  } catch (const SpecError& exc) {
    throw SpecError(path + ": " + exc.what());
  }
}

}  // namespace edgedepth
