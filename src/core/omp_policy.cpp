#include "core/omp_policy.h"

#include <unistd.h>

#include <cstdlib>

namespace gptq {

void reexec_with_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  // Set before the exec, so the new image's libgomp reads it and this cannot loop.
  if (::setenv("OMP_WAIT_POLICY", "passive", 0) != 0) return;
  ::execv("/proc/self/exe", argv);
}

}  // namespace gptq
