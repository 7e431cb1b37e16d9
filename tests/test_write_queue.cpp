// The background writer's queue (io/write_queue.h): order, the bound on bytes in
// flight, and how a failed job's error reaches the caller.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/error.h"
#include "io/write_queue.h"

namespace gptq {
namespace {

using io::WriteQueue;

TEST(WriteQueue, RunsJobsInTheOrderPushed) {
  std::vector<int> ran;
  WriteQueue q(1000);
  for (int i = 0; i < 100; ++i) q.push([&ran, i] { ran.push_back(i); }, 10);
  q.drain();
  ASSERT_EQ(ran.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(ran[std::size_t(i)], i);
}

// With 8 of 10 bytes held by a job that cannot finish, a push of 8 more waits until it
// does; a job larger than the cap is still taken once the queue is empty.
TEST(WriteQueue, APushPastTheCapWaitsForTheQueueToEmpty) {
  WriteQueue q(10);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  q.push([gate] { gate.wait(); }, 8);
  std::atomic<bool> pushed{false};
  std::thread pusher([&] {
    q.push([] {}, 8);
    pushed = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_FALSE(pushed) << "the second job was queued with 16 bytes in flight under a cap of 10";
  release.set_value();
  pusher.join();
  EXPECT_TRUE(pushed);
  q.push([] {}, 1000);
  q.drain();
}

// The failed job's Error, with its kind and message, at every later push and drain; the
// jobs queued after it do not run.
TEST(WriteQueue, AFailedJobsErrorReachesTheCallerAndStopsTheQueue) {
  WriteQueue q(1000);
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  std::atomic<bool> later_ran{false};
  q.push([gate] {
    gate.wait();
    throw Error(ErrorKind::kIo, "tensor \"w\": write failed");
  }, 1);
  q.push([&] { later_ran = true; }, 1);
  release.set_value();
  for (int i = 0; i < 2; ++i) {
    try {
      q.drain();
      ADD_FAILURE() << "drain did not rethrow";
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::kIo);
      EXPECT_STREQ(e.what(), "tensor \"w\": write failed");
    }
  }
  EXPECT_THROW(q.push([] {}, 1), Error);
  EXPECT_THROW(q.check(), Error);
  EXPECT_FALSE(later_ran);
}

}  // namespace
}  // namespace gptq
