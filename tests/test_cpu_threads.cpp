// The CPU thread sizing (core/cpu_threads.h): the /proc/loadavg parser, the count for a
// given load, and the fixed policy reaching OpenMP.
#include "core/cpu_threads.h"

#include <gtest/gtest.h>
#include <omp.h>

namespace gptq {
namespace {

TEST(CpuThreads, ParsesTheRunnableTaskCount) {
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74 3/345 12345\n"), 3);
  EXPECT_EQ(parse_running_tasks("12.00 8.50 4.25 17/2048 1"), 17);
  EXPECT_EQ(parse_running_tasks("0.00 0.00 0.00 1/1 1"), 1);
  // Not the loadavg form: -1, so the caller keeps its thread count.
  EXPECT_EQ(parse_running_tasks(""), -1);
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74"), -1);
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74 /345 1"), -1);
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74 x/345 1"), -1);
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74 3x/345 1"), -1);
  EXPECT_EQ(parse_running_tasks("0.47 1.40 1.74 -3/345 1"), -1);
}

TEST(CpuThreads, LeavesTheCoresOthersUse) {
  // The sampling thread counts itself once: 1 runnable is an idle machine.
  EXPECT_EQ(threads_for_load(2, {1, 1, 1}), 2);
  EXPECT_EQ(threads_for_load(2, {2, 2, 2}), 1);   // one other busy process on 2 cores
  EXPECT_EQ(threads_for_load(16, {4, 4, 4}), 13);
  EXPECT_EQ(threads_for_load(2, {9, 9, 9}), 1);   // never below one thread
  EXPECT_EQ(threads_for_load(4, {}), 4);          // no samples: all usable cores
  EXPECT_EQ(threads_for_load(4, {0, 0}), 4);      // a count below ourselves is noise, not spare cores
  // The median ignores a short burst (our own workers still winding down, a passing task).
  EXPECT_EQ(threads_for_load(8, {1, 1, 1, 1, 1, 6, 7, 1}), 8);
  EXPECT_EQ(threads_for_load(8, {3, 3, 3, 3, 1, 1, 3, 3}), 6);
  EXPECT_EQ(threads_for_load(0, {1}), 1);
}

TEST(CpuThreads, FixedPolicyReachesOpenMp) {
  const int usable = usable_cores();
  ASSERT_GE(usable, 1);
  set_thread_policy({.mode = ThreadMode::kFixed, .count = 3});
  EXPECT_EQ(omp_get_max_threads(), 3);
  EXPECT_EQ(fit_threads_to_load(), 3);
  EXPECT_EQ(thread_policy().mode, ThreadMode::kFixed);
  // usable_cores() is what OpenMP offered before gptq.cpp changed it, not the fixed count.
  EXPECT_EQ(usable_cores(), usable);
  set_thread_policy({.mode = ThreadMode::kAuto});
  const int n = fit_threads_to_load();
  EXPECT_GE(n, 1);
  EXPECT_LE(n, usable);
  EXPECT_EQ(omp_get_max_threads(), n);
}

}  // namespace
}  // namespace gptq
