#include <string_view>

#include "core/error.h"

namespace gptq {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kIo: return "I/O error";
    case ErrorKind::kFormat: return "format error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kNumerical: return "numerical error";
    case ErrorKind::kDevice: return "device error";
    case ErrorKind::kInternal: return "internal error";
  }
  return "error";
}

void fail_check(const char* file, int line, const std::string& what) {
  std::string_view f = file;
  if (const auto p = f.rfind("src/"); p != std::string_view::npos) f.remove_prefix(p);
  throw Error(ErrorKind::kInternal, what + " (" + std::string(f) + ":" + std::to_string(line) + ")");
}

}  // namespace gptq
