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
  kDevice,           // an accelerator call failed or the device lacks what was asked (memory)
  kInternal,         // a broken invariant: a bug in gptq.cpp, not in the input
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

// Always-on invariant check for programmer errors (shapes the caller guarantees):
// throws kInternal naming the file and line, never aborts.
[[noreturn]] void fail_check(const char* file, int line, const std::string& what);
#define GPTQ_CHECK(cond, what)                                      \
  do {                                                              \
    if (!(cond)) ::gptq::fail_check(__FILE__, __LINE__, (what));    \
  } while (0)

}  // namespace gptq
