// Module definition and the one place where gptq::Error becomes a Python exception:
// kInvalidArgument -> ValueError, kIo -> OSError, kUnsupported -> NotImplementedError,
// everything else -> RuntimeError; the message is the library's.
#include <nanobind/stl/string.h>

#include "backend/registry.h"
#include "core/error.h"
#include "native.h"

namespace gptq::py {
namespace {

PyObject* exception_type(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kInvalidArgument: return PyExc_ValueError;
    case ErrorKind::kIo: return PyExc_OSError;
    case ErrorKind::kUnsupported: return PyExc_NotImplementedError;
    default: return PyExc_RuntimeError;
  }
}

}  // namespace
}  // namespace gptq::py

NB_MODULE(_gptqcpp, m) {
  namespace nb = nanobind;
  using namespace gptq::py;
  m.doc() = "gptq.cpp's library: tokenizer, model runtime, GPTQ quantization, evaluation";
  m.attr("__version__") = GPTQ_VERSION;
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const gptq::Error& e) {
      PyErr_SetString(exception_type(e.kind()), e.what());
    }
  });
  m.def("default_backend", &gptq::backend::default_backend,
        "What device='auto' resolves to here: 'cuda:0' when a GPU is present, else 'cpu'");
  m.def("cuda_device_count", &gptq::backend::cuda_device_count);
  bind_tokenizer(m);
  bind_model(m);
  bind_quantize(m);
}
