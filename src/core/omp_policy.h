// The OpenMP wait policy of the gptq program: passive unless the user chose one.
//
// libgomp's default lets idle threads spin for milliseconds after each parallel region,
// which is fastest on an otherwise idle machine but collapses when another process wants
// the same cores. Measured on 2 cores beside one busy process (the demo's quantization):
// 41.8 s spinning, 20.6 s passive, 18.0 s passive with the thread count fitted to the
// load (core/cpu_threads.h); idle: 12.1 s spinning, 13.1 s passive.
//
// libgomp reads OMP_WAIT_POLICY once, in its constructor, before main(); nothing set
// later reaches it. An earlier .preinit_array hook calling setenv did nothing: glibc
// resets its environment pointer after preinit functions run, so neither libgomp nor
// main saw the variable (measured: a worker's CPU time equalled the wall time through the
// serial parts). So main() re-executes the program once with the variable set.
#pragma once

namespace gptq {

// When OMP_WAIT_POLICY is unset: sets it to "passive" and replaces the process with a
// fresh run of the same executable and arguments (execv of /proc/self/exe; a few
// milliseconds). Returns only when the variable was already set (the user's choice, or
// this is the re-executed run) or the exec failed (the run goes on with libgomp's default).
// For a program's main(), before any other work: nothing of the current process survives.
void reexec_with_passive_omp_wait(char** argv);

}  // namespace gptq
