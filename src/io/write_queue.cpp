#include "io/write_queue.h"

namespace gptq::io {

WriteQueue::WriteQueue(uint64_t max_bytes) : max_bytes_(max_bytes), thread_([this] { run(); }) {}

WriteQueue::~WriteQueue() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    jobs_.clear();
  }
  changed_.notify_all();
  thread_.join();
}

void WriteQueue::rethrow_failure(std::unique_lock<std::mutex>& lock) {
  if (!failure_) return;
  const std::exception_ptr e = failure_;
  lock.unlock();
  std::rethrow_exception(e);
}

void WriteQueue::push(std::function<void()> job, uint64_t bytes) {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return failure_ || queued_bytes_ == 0 || queued_bytes_ + bytes <= max_bytes_; });
  rethrow_failure(lock);
  jobs_.push_back({std::move(job), bytes});
  queued_bytes_ += bytes;
  lock.unlock();
  changed_.notify_all();
}

void WriteQueue::drain() {
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait(lock, [&] { return failure_ || (jobs_.empty() && !running_); });
  rethrow_failure(lock);
}

void WriteQueue::check() {
  std::unique_lock<std::mutex> lock(mu_);
  rethrow_failure(lock);
}

void WriteQueue::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    changed_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    lock.unlock();
    std::exception_ptr failed;
    try {
      job.work();
    } catch (...) {
      failed = std::current_exception();
    }
    job.work = nullptr;  // its data goes before the bytes are counted free
    lock.lock();
    running_ = false;
    queued_bytes_ -= job.bytes;
    if (failed) {
      failure_ = failed;
      for (const Job& j : jobs_) queued_bytes_ -= j.bytes;
      jobs_.clear();
    }
    changed_.notify_all();
  }
}

}  // namespace gptq::io
