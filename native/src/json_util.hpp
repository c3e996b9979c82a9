// Internal: nlohmann::json helpers that let C++ messages read like Python's (repr and type names
// of the value that was found), so a user sees the same one-line refusal from either runtime.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "edgedepth/spec.hpp"

namespace edgedepth {
namespace detail {

using Json = nlohmann::json;

/// Python's repr() of the value json.loads would give (None, True, 'text', [1, 2], {'k': 3}).
std::string py_repr(const Json& value);
/// Python's `{value!r:.60}`: the repr cut to 60 characters.
std::string py_repr60(const Json& value);
/// Python's type(value).__name__ for a json.loads result: NoneType, bool, int, float, str, list, dict.
std::string py_type(const Json& value);
/// Python's repr of a list of strings: ['a', 'b'].
std::string py_list(const std::vector<std::string>& names);

/// ModelSpec.from_dict on an already parsed value.
ModelSpec model_spec_from_json(const Json& data);

}  // namespace detail
}  // namespace edgedepth
