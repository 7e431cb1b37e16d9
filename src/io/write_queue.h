// Runs I/O jobs in order on one background thread, so that writing overlaps the caller's
// compute, with the bytes the queued jobs hold bounded: a job that would take the queue
// past the cap waits until enough of it is written (a job larger than the cap runs
// alone). The first job that throws stops the queue (the jobs after it are dropped) and
// its exception is kept for the caller: every later push() or drain() rethrows it, the
// same typed Error that the job threw.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace gptq::io {

class WriteQueue {
 public:
  explicit WriteQueue(uint64_t max_bytes);
  // Drops the jobs not yet started, waits for the one running, and joins.
  ~WriteQueue();
  WriteQueue(const WriteQueue&) = delete;
  WriteQueue& operator=(const WriteQueue&) = delete;

  // Queues `job`, which holds `bytes` of data until it has run. Rethrows a failed job's
  // exception instead.
  void push(std::function<void()> job, uint64_t bytes);
  // Returns once every queued job has run; rethrows a failed job's exception.
  void drain();
  // Rethrows a failed job's exception, without waiting for the queue.
  void check();

 private:
  struct Job {
    std::function<void()> work;
    uint64_t bytes = 0;
  };
  void run();
  // With the lock held: rethrows the failed job's exception, if any.
  void rethrow_failure(std::unique_lock<std::mutex>& lock);

  const uint64_t max_bytes_;
  std::mutex mu_;
  std::condition_variable changed_;  // a job queued, started, finished, or the end asked for
  std::deque<Job> jobs_;
  uint64_t queued_bytes_ = 0;  // of jobs queued or running
  bool running_ = false;       // a job is being run
  bool stop_ = false;
  std::exception_ptr failure_;
  std::thread thread_;  // last: started once the members above exist
};

}  // namespace gptq::io
