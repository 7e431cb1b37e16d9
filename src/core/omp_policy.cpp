#include "core/omp_policy.h"

#include <cstdlib>

namespace gptq {

namespace {
// Runs from the executable's .preinit_array: before any shared library's constructor,
// and so before libgomp reads its environment. overwrite = 0 keeps a user's choice.
void default_passive_wait(int, char**, char**) { ::setenv("OMP_WAIT_POLICY", "passive", 0); }
}  // namespace

__attribute__((section(".preinit_array"), used)) void (*const gptq_preinit_omp_policy)(int, char**, char**) =
    default_passive_wait;

void omp_policy_hook_linked() {}

}  // namespace gptq
