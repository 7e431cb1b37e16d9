// The ranks of one data-parallel quantization: one thread per device in one process,
// meeting at collective steps (quant/parallel.h drives them).
//
// Why threads in one process, not one process per device: the ranks share the memory map
// of the source checkpoint, the calibration set and one checkpoint writer (rank 0's), so
// nothing is loaded W times and no launcher or rendezvous file is needed; a rank's
// result (a quantized module's packed tensors) reaches the others as a pointer. The one
// collective here is an all-gather of pointers in rank order, so every reduction built
// on it sums in rank order, the same on every rank and in every run.
//
// Failure: a rank that throws marks the group failed before it unwinds; every rank
// waiting in (or later entering) a collective then throws instead of waiting for it, so
// one rank's error never leaves the others blocked.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace gptq::quant {

class RankGroup {
 public:
  explicit RankGroup(int world);
  int world() const { return world_; }

  // Every rank passes its value and gets all of them, index = rank, once all ranks have
  // arrived. Throws kInternal ("another rank failed") once the group has failed.
  std::vector<std::shared_ptr<const void>> all_gather(int rank, std::shared_ptr<const void> mine);

  // Typed convenience over all_gather.
  template <class T>
  std::vector<std::shared_ptr<const T>> gather(int rank, std::shared_ptr<const T> mine) {
    std::vector<std::shared_ptr<const T>> out;
    for (auto& p : all_gather(rank, std::move(mine))) out.push_back(std::static_pointer_cast<const T>(p));
    return out;
  }

  // The mean over every rank's rows of a per-rank mean over `rows` rows:
  // Σ_r (rows_r / n) · part_r, n = Σ_r rows_r, summed in rank order in fp64, so every rank
  // gets the same vector bit for bit; returns it with n. Every part has the same size.
  std::pair<std::vector<double>, int64_t> pooled_mean(int rank, std::vector<double> part, int64_t rows);

  // Marks the group failed and wakes every waiting rank.
  void fail();

 private:
  // Waits until all ranks of the current round arrived (or the group failed).
  void arrive_and_wait(std::unique_lock<std::mutex>& lock);

  const int world_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool failed_ = false;
  int arrived_ = 0;
  uint64_t round_ = 0;  // completed rounds; a rank waits for the round it arrived in to end
  std::vector<std::shared_ptr<const void>> slots_;
};

// Which rank quantizes each module of a group, given each module's cost (N · K): the
// costliest first, each to the rank with the least cost so far (the lowest such rank on
// a tie), so the ranks finish a group about together. The same answer on every rank.
std::vector<int> assign_owners(const std::vector<int64_t>& cost, int world);

}  // namespace gptq::quant
