// Timing of GPU work for the benchmarks: CUDA graphs of repeated calls, median of replays.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

#include "backend/backend.h"

namespace gptq::bench {

inline double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Seconds per call of `work` on `b`: one call outside any capture (it sizes workspaces),
// one timed call to choose `inner` so that a replay lasts about `replay_seconds` (1 to
// 50 calls), then a graph of `inner` calls replayed reps + 1 times (the first warms up)
// or, where the backend records no graphs, the calls themselves; the median.
inline double seconds_per_call(backend::Backend& b, const std::function<void()>& work, int reps,
                               double replay_seconds) {
  work();
  b.synchronize();
  const double t0 = now_seconds();
  work();
  b.synchronize();
  const double once = now_seconds() - t0;
  const int inner = int(std::clamp(replay_seconds / std::max(once, 1e-7), 1.0, 50.0));
  auto graph = b.capture([&] {
    for (int i = 0; i < inner; ++i) work();
  });
  std::vector<double> t;
  for (int r = 0; r < reps + 1; ++r) {
    const double s = now_seconds();
    if (graph) {
      graph->replay();
    } else {
      for (int i = 0; i < inner; ++i) work();
    }
    b.synchronize();
    if (r > 0) t.push_back((now_seconds() - s) / inner);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace gptq::bench
