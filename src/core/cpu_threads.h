// How many OpenMP threads the CPU work runs on: all usable cores, or, by default, the cores
// that other processes leave free, refitted as the load changes.
//
// Why: a parallel region splits its work evenly (static schedules, OpenBLAS) and lasts as
// long as its slowest thread. With N threads on N cores and one other busy process, one of
// our threads shares a core, so every region runs at about half speed and the other cores
// wait. Measured on the 2-core CI machine, the demo's quantization (stories15M, 128 x 256
// tokens): 13.2 s idle; beside one busy process 37.7 s with 2 threads but 18.7 s with 1.
// ThreadMode::kAuto sizes the count to what is free; kFixed keeps the user's number.
#pragma once

#include <string_view>
#include <vector>

namespace gptq {

enum class ThreadMode { kAuto, kFixed };

struct ThreadPolicy {
  ThreadMode mode = ThreadMode::kAuto;
  int count = 0;  // kFixed: the thread count (>= 1); unused by kAuto
};

// Process-wide; applied to the calling thread at once (OpenMP's thread count is a
// per-thread setting: later fits on other threads follow the policy too).
void set_thread_policy(const ThreadPolicy& policy);
ThreadPolicy thread_policy();

// The usable cores: OpenMP's thread count before gptq.cpp changed it (the CPUs in this
// process's affinity mask, or OMP_NUM_THREADS when set), at least 1.
int usable_cores();

// kAuto: at most once a second per calling thread, count the other runnable tasks and set
// this thread's OpenMP thread count to the cores they leave (a few microseconds when it
// is not yet time: one clock read). kFixed: sets the fixed count. Returns the count set.
// Called where CPU work starts (the CPU backend's products, the GPTQ compute, each layer
// of a quantization), so no command has to remember it.
int fit_threads_to_load();

// The pure parts, tested on their own.
// The runnable-task count in a /proc/loadavg line ("0.47 1.40 1.74 3/345 1234" -> 3);
// -1 when the line is not in that form.
int parse_running_tasks(std::string_view loadavg);
// Threads for `usable` cores given samples of the system's runnable tasks taken by one
// thread of this process while its workers sleep: the median sample minus that thread
// is what others run; the rest is ours, clamped to [1, usable]. No samples: usable.
int threads_for_load(int usable, std::vector<int> running_samples);

}  // namespace gptq
