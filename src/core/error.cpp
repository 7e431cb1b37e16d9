#include "core/error.h"

namespace gptq {

const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kIo: return "I/O error";
    case ErrorKind::kFormat: return "format error";
    case ErrorKind::kUnsupported: return "unsupported";
    case ErrorKind::kInvalidArgument: return "invalid argument";
    case ErrorKind::kNumerical: return "numerical error";
  }
  return "error";
}

}  // namespace gptq
