// Live and peak bytes of a backend's buffers. Shared with each buffer's deleter, so a
// buffer that outlives its backend still frees and counts correctly.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace gptq::backend {

class AllocationMeter {
 public:
  void add(uint64_t bytes) {
    const uint64_t now = live_.fetch_add(bytes) + bytes;
    uint64_t p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
  }
  void remove(uint64_t bytes) { live_.fetch_sub(bytes); }
  uint64_t live() const { return live_.load(); }
  uint64_t peak() const { return peak_.load(); }

 private:
  std::atomic<uint64_t> live_{0};
  std::atomic<uint64_t> peak_{0};
};

}  // namespace gptq::backend
