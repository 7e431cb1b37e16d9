#include "core/cpu_threads.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <thread>

namespace gptq {

namespace {

std::atomic<ThreadMode> g_mode{ThreadMode::kAuto};
std::atomic<int> g_count{0};

// One sample costs a read of /proc/loadavg (~microseconds); 8 of them 200 us apart span
// long enough for our own workers to have gone to sleep after the last region (passive
// wait: core/omp_policy.h) and short enough to add < 0.2% at one fit per second.
constexpr int kSamples = 8;
constexpr auto kSampleGap = std::chrono::microseconds(200);
constexpr auto kRefitEvery = std::chrono::seconds(1);

int read_running_tasks() {
  std::FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return -1;
  char buf[128] = {};
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  return parse_running_tasks(std::string_view(buf, n));
}

}  // namespace

int usable_cores() {
  // Read once, before any omp_set_num_threads of ours can change the answer.
  static const int cores = std::max(1, omp_get_max_threads());
  return cores;
}

void set_thread_policy(const ThreadPolicy& policy) {
  usable_cores();
  g_count.store(policy.count);
  g_mode.store(policy.mode);
  if (policy.mode == ThreadMode::kFixed) omp_set_num_threads(std::max(1, policy.count));
}

ThreadPolicy thread_policy() { return {.mode = g_mode.load(), .count = g_count.load()}; }

int parse_running_tasks(std::string_view s) {
  // Fields: three load averages, "running/total", last pid.
  std::size_t pos = 0;
  for (int field = 0; field < 3; ++field) {
    pos = s.find(' ', pos);
    if (pos == std::string_view::npos) return -1;
    ++pos;
  }
  const std::size_t slash = s.find('/', pos);
  if (slash == std::string_view::npos || slash == pos) return -1;
  int running = -1;
  const auto r = std::from_chars(s.data() + pos, s.data() + slash, running);
  if (r.ec != std::errc() || r.ptr != s.data() + slash || running < 0) return -1;
  return running;
}

int threads_for_load(int usable, std::vector<int> samples) {
  usable = std::max(1, usable);
  if (samples.empty()) return usable;
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2, samples.end());
  const int others = std::max(0, samples[samples.size() / 2] - 1);
  return std::clamp(usable - others, 1, usable);
}

int fit_threads_to_load() {
  const int usable = usable_cores();
  if (g_mode.load() == ThreadMode::kFixed) {
    const int n = std::max(1, g_count.load());
    omp_set_num_threads(n);
    return n;
  }
  thread_local std::chrono::steady_clock::time_point next{};
  thread_local int current = usable;
  const auto now = std::chrono::steady_clock::now();
  if (now < next) {
    omp_set_num_threads(current);  // cheap; keeps a fixed count set in between from lingering
    return current;
  }
  next = now + kRefitEvery;
  if (usable == 1) return current = 1;
  std::vector<int> samples;
  samples.reserve(kSamples);
  for (int i = 0; i < kSamples; ++i) {
    if (i > 0) std::this_thread::sleep_for(kSampleGap);
    const int r = read_running_tasks();
    if (r < 0) return current;  // no /proc: keep what runs
    samples.push_back(r);
  }
  current = threads_for_load(usable, std::move(samples));
  omp_set_num_threads(current);
  return current;
}

}  // namespace gptq
