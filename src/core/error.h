// The one error type the library throws. Only the command line's main() turns
// it into a message and an exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace gptq {

enum class ErrorKind {
  kIo,               // a file could not be opened, read or written
  kFormat,           // a file's contents break its format (hostile or corrupt input)
  kUnsupported,      // well-formed, but something this build does not implement
  kInvalidArgument,  // a caller or user asked for something impossible
  kNumerical,        // the maths failed (e.g. Cholesky after every damping retry)
};

const char* to_string(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

}  // namespace gptq
