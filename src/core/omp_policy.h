// OpenMP wait policy default for every program that links the library.
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, before main(). Its default
// lets idle threads spin, which is fastest on an otherwise idle machine but collapses
// when another process wants the same cores: measured on 2 cores with one other busy
// process, decode fell from 347 to 6.5 tok/s and a quantization run took 119 s
// instead of 12 s. So a program linking gptq defaults to "passive" unless the user has
// set OMP_WAIT_POLICY (export OMP_WAIT_POLICY=active on a dedicated machine).
#pragma once

namespace gptq {

// Referencing this (the CPU backend does) links in the pre-initialisation hook that
// sets the default; it does nothing itself.
void omp_policy_hook_linked();

}  // namespace gptq
