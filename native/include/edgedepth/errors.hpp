// Exceptions of the native library: the C++ side of edgedepth.errors.
// Every message is one line: what was received, what was expected, how to fix it.
#pragma once

#include <stdexcept>
#include <string>

namespace edgedepth {

/// Base of every error the library throws (Python: EdgeDepthError).
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A model spec that is malformed or inconsistent (Python: SpecError).
class SpecError : public Error {
 public:
  using Error::Error;
};

/// An engine sidecar that is missing, unreadable or malformed (Python: ExportError).
class SidecarError : public Error {
 public:
  using Error::Error;
};

/// An engine that cannot run on this TensorRT, GPU or platform (Python: DeviceError).
class DeviceError : public Error {
 public:
  using Error::Error;
};

}  // namespace edgedepth
