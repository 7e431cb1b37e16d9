// The nanobind module gptqcpp._gptqcpp: thin bindings over the library, one file per
// area. The Python layer (python/src/gptqcpp) gives them GPTQModel's names.
//
// Threading: every call that does native work releases the GIL (without_gil). Callbacks
// into Python -- progress, streaming, and the Ctrl-C check -- take it back for the call
// only. A Python exception raised there (KeyboardInterrupt from PyErr_CheckSignals, or
// whatever a user callback raises) stays set in the thread state while PythonErrorPending
// unwinds the library's stack (which is exception-safe: a quantization in progress removes
// its temporary directory); without_gil then rethrows it as that Python exception.
#pragma once

#include <nanobind/nanobind.h>

#include <exception>
#include <utility>

namespace gptq::py {

namespace nb = nanobind;

struct PythonErrorPending : std::exception {
  const char* what() const noexcept override { return "a Python exception is pending"; }
};

// With the GIL held: raises KeyboardInterrupt (pending) when Ctrl-C was pressed.
inline void check_signals_locked() {
  if (PyErr_CheckSignals() != 0) throw PythonErrorPending{};
}

// Called from native code without the GIL: takes it, checks for Ctrl-C, then runs `f`
// (which may call into Python).
template <class F>
void with_python(F&& f) {
  nb::gil_scoped_acquire gil;
  check_signals_locked();
  try {
    f();
  } catch (nb::python_error& e) {
    e.restore();
    throw PythonErrorPending{};
  }
}

// The same for a Python callable that may be None: fn(args...).
template <class... Args>
void call_back(const nb::object& fn, const Args&... args) {
  with_python([&] {
    if (!fn.is_none()) fn(args...);
  });
}

// Runs `f` with the GIL released; a pending Python exception is raised again here.
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
  try {
    nb::gil_scoped_release nogil;
    return f();
  } catch (const PythonErrorPending&) {
    throw nb::python_error();
  }
}

void bind_tokenizer(nb::module_& m);
void bind_model(nb::module_& m);
void bind_quantize(nb::module_& m);

}  // namespace gptq::py
