// A few assertions for the native tests: each failed check prints its line and the test exits 1.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

namespace edgedepth_test {

inline int& failures() {
  static int count = 0;
  return count;
}

inline void fail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "%s:%d: FAILED: %s\n", file, line, what.c_str());
  ++failures();
}

/// Runs `body` and checks that it throws `Expected` whose message contains `fragment`.
template <typename Expected>
bool throws_with(const std::function<void()>& body, const std::string& fragment, std::string* message) {
  try {
    body();
  } catch (const Expected& exc) {
    *message = exc.what();
    return message->find(fragment) != std::string::npos;
  } catch (const std::exception& exc) {
    *message = std::string("another exception: ") + exc.what();
    return false;
  }
  *message = "no exception";
  return false;
}

inline int finish(const char* name) {
  if (failures()) {
    std::fprintf(stderr, "%s: %d check(s) failed\n", name, failures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}

inline std::string read_text(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

}  // namespace edgedepth_test

#define CHECK(cond)                                                     \
  do {                                                                  \
    if (!(cond)) edgedepth_test::fail(__FILE__, __LINE__, #cond);       \
  } while (0)

#define CHECK_EQ(a, b)                                                                              \
  do {                                                                                              \
    std::ostringstream check_eq_text_;                                                              \
    if (!((a) == (b))) {                                                                            \
      check_eq_text_ << #a " == " #b " (" << (a) << " vs " << (b) << ")";                           \
      edgedepth_test::fail(__FILE__, __LINE__, check_eq_text_.str());                               \
    }                                                                                               \
  } while (0)

/// CHECK_THROWS(SpecError, statement, "fragment of the message")
#define CHECK_THROWS(type, statement, fragment)                                                      \
  do {                                                                                              \
    std::string check_throws_message_;                                                              \
    if (!edgedepth_test::throws_with<type>([&] { statement; }, fragment, &check_throws_message_)) { \
      edgedepth_test::fail(__FILE__, __LINE__,                                                      \
                           std::string(#statement " should throw " #type " with '") + (fragment) +  \
                               "', got: " + check_throws_message_);                                 \
    }                                                                                               \
  } while (0)
