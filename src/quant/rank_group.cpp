#include "quant/rank_group.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace gptq::quant {

RankGroup::RankGroup(int world) : world_(world), slots_(std::size_t(world > 0 ? world : 0)) {
  if (world < 1) throw Error(ErrorKind::kInvalidArgument, "a rank group needs at least one rank, not " + std::to_string(world));
}

void RankGroup::fail() {
  {
    const std::lock_guard<std::mutex> lock(mu_);
    failed_ = true;
  }
  cv_.notify_all();
}

void RankGroup::arrive_and_wait(std::unique_lock<std::mutex>& lock) {
  if (failed_) throw Error(ErrorKind::kInternal, "another rank of the quantization failed");
  const uint64_t round = round_;
  if (++arrived_ == world_) {
    arrived_ = 0;
    ++round_;
    cv_.notify_all();
    return;
  }
  cv_.wait(lock, [&] { return failed_ || round_ != round; });
  if (round_ == round) throw Error(ErrorKind::kInternal, "another rank of the quantization failed");
}

std::vector<std::shared_ptr<const void>> RankGroup::all_gather(int rank, std::shared_ptr<const void> mine) {
  GPTQ_CHECK(rank >= 0 && rank < world_, "rank group: rank out of range");
  std::unique_lock<std::mutex> lock(mu_);
  slots_[std::size_t(rank)] = std::move(mine);
  arrive_and_wait(lock);  // every slot of this round is filled
  std::vector<std::shared_ptr<const void>> all = slots_;
  // A second meeting before anyone may write its slot for the next round.
  arrive_and_wait(lock);
  return all;
}

std::pair<std::vector<double>, int64_t> RankGroup::pooled_mean(int rank, std::vector<double> part, int64_t rows) {
  struct Part {
    std::vector<double> v;
    int64_t rows;
  };
  const auto parts = gather<Part>(rank, std::make_shared<const Part>(Part{std::move(part), rows}));
  int64_t n = 0;
  for (const auto& p : parts) n += p->rows;
  std::vector<double> mean(parts[0]->v.size(), 0.0);
  if (n == 0) return {std::move(mean), 0};
  for (const auto& p : parts) {
    GPTQ_CHECK(p->v.size() == mean.size(), "rank group: parts of different sizes");
    const double w = double(p->rows) / double(n);
    for (std::size_t i = 0; i < mean.size(); ++i) mean[i] += w * p->v[i];
  }
  return {std::move(mean), n};
}

std::vector<int> assign_owners(const std::vector<int64_t>& cost, int world) {
  std::vector<std::size_t> order(cost.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return cost[a] > cost[b]; });
  std::vector<int64_t> load(std::size_t(world), 0);
  std::vector<int> owner(cost.size(), 0);
  for (std::size_t i : order) {
    const auto least = std::min_element(load.begin(), load.end());
    owner[i] = int(least - load.begin());
    *least += cost[i];
  }
  return owner;
}

}  // namespace gptq::quant
