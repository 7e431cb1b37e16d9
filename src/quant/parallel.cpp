#include "quant/parallel.h"

#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/registry.h"
#include "core/error.h"
#include "quant/rank_group.h"

namespace gptq::quant {

std::vector<CalibSet> calibration_shares(const CalibSet& calib, int world, const PipelineOptions& o) {
  std::vector<int64_t> lengths;
  for (const auto& s : calib.samples) lengths.push_back(int64_t(s.size()));
  const bool by_samples = o.batch_samples > 0;
  const std::vector<std::size_t> starts =
      chunk_starts(lengths, by_samples ? std::numeric_limits<int64_t>::max() : o.batch_tokens,
                   by_samples ? o.batch_samples : std::numeric_limits<int64_t>::max());
  const auto chunks = int64_t(starts.size()) - 1;
  if (chunks < world) {
    throw Error(ErrorKind::kInvalidArgument,
                "the calibration makes " + std::to_string(chunks) + " forward chunk" + (chunks == 1 ? "" : "s") +
                    " (" + std::to_string(calib.samples.size()) + " samples), fewer than the " +
                    std::to_string(world) + " devices to share them: a smaller --batch-size or more samples");
  }
  std::vector<CalibSet> shares;
  for (int r = 0; r < world; ++r) {
    CalibSet share = calib;
    share.samples.assign(calib.samples.begin() + std::ptrdiff_t(starts[std::size_t(r * chunks / world)]),
                         calib.samples.begin() + std::ptrdiff_t(starts[std::size_t((r + 1) * chunks / world)]));
    shares.push_back(std::move(share));
  }
  return shares;
}

QuantizeResult quantize_model_parallel(const std::filesystem::path& model_dir, const CalibSet& calib,
                                       std::span<backend::Backend* const> backends, const PipelineOptions& o) {
  const int world = int(backends.size());
  if (world < 1) throw Error(ErrorKind::kInvalidArgument, "quantize: no device given");
  // RTN reads no calibration: there is nothing to share.
  if (world == 1 || o.config.method == Method::kRtn) return quantize_model(model_dir, calib, *backends[0], o);
  check_quantizable(model_dir, o.config);

  // Ranks other than 0 report nothing and write nothing.
  std::vector<PipelineOptions> opts(std::size_t(world), o);
  for (int r = 1; r < world; ++r) {
    PipelineOptions& q = opts[std::size_t(r)];
    // Rank 0 records the layers; a continued run's other ranks replay them from its journal.
    if (o.journal_mode == LayerJournal::Mode::kContinue) {
      q.journal_mode = LayerJournal::Mode::kRead;
    } else {
      q.journal_dir.clear();
    }
    q.on_note = nullptr;
    q.on_module = nullptr;
    q.on_quantized = nullptr;
    q.on_layer = nullptr;
    q.on_layer_times = nullptr;
    q.on_startup = nullptr;
  }
  // Ranks on one device share its memory: each plans with its part of the cap (or of
  // what is free now), not all of it, or the first pass would run the device out.
  std::map<std::string, int> on_device;
  for (backend::Backend* b : backends) {
    if (b->device() != backend::Device::kCpu) ++on_device[b->name()];
  }
  for (int r = 0; r < world; ++r) {
    backend::Backend& b = *backends[std::size_t(r)];
    if (b.device() == backend::Device::kCpu || on_device[b.name()] == 1) continue;
    const backend::MemoryStats m = b.memory();
    const uint64_t cap = o.max_device_bytes > 0 ? o.max_device_bytes : m.device_total - m.device_used;
    opts[std::size_t(r)].max_device_bytes = cap / uint64_t(on_device[b.name()]);
  }

  const std::vector<CalibSet> shares = calibration_shares(calib, world, o);
  const std::vector<std::unique_ptr<backend::DeviceComm>> comms = backend::make_device_comms(backends);
  if (o.on_note) {
    o.on_note(std::to_string(world) + " ranks; Hessians pooled " +
              (comms.empty() ? "through host memory" : "device to device (NCCL)"));
  }
  RankGroup group(world);
  std::vector<QuantizeResult> results(static_cast<std::size_t>(world));
  std::mutex mu;
  std::exception_ptr first;  // the error that stopped the group; the others follow from it
  auto rank_main = [&](int r) {
    try {
      backends[std::size_t(r)]->bind_thread();
      results[std::size_t(r)] =
          quantize_model_rank(model_dir, shares[std::size_t(r)], *backends[std::size_t(r)], opts[std::size_t(r)],
                              {.group = &group, .rank = r, .whole = &calib,
                               .comm = comms.empty() ? nullptr : comms[std::size_t(r)].get()});
    } catch (...) {
      {
        const std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
      }
      group.fail();
      for (const auto& c : comms) c->abort();  // a rank inside an all-reduce waits on NCCL, not the group
    }
  };
  std::vector<std::thread> threads;
  for (int r = 1; r < world; ++r) threads.emplace_back(rank_main, r);
  rank_main(0);
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
  return std::move(results[0]);
}

}  // namespace gptq::quant
