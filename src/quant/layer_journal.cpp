#include "quant/layer_journal.h"

#include <cstdio>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_file.h"

namespace gptq::quant {

namespace fs = std::filesystem;

LayerJournal::LayerJournal(fs::path dir, const nlohmann::ordered_json& fingerprint, Mode mode, uint64_t queue_bytes)
    : dir_(std::move(dir)), queue_(std::make_unique<io::WriteQueue>(queue_bytes)) {
  const fs::path run = dir_ / "run.json";
  if (mode != Mode::kFresh) {
    if (!fs::exists(run)) {
      throw Error(ErrorKind::kInvalidArgument, "--resume: " + dir_.string() + " holds no interrupted run to continue");
    }
    const nlohmann::ordered_json before = io::read_ordered_json_file(run);
    if (mode == Mode::kContinue && before != fingerprint) {
      for (const auto& [key, value] : before.items()) {
        if (!fingerprint.contains(key)) {
          throw Error(ErrorKind::kInvalidArgument, "--resume: the interrupted run in " + dir_.string() + " had another " +
                                                       key + " (" + value.dump() + ", now none)");
        }
      }
      for (const auto& [key, value] : fingerprint.items()) {
        if (!before.contains(key) || before[key] != value) {
          throw Error(ErrorKind::kInvalidArgument, "--resume: the interrupted run in " + dir_.string() + " had another " +
                                                       key + " (" + (before.contains(key) ? before[key].dump() : "none") +
                                                       ", now " + value.dump() + ")");
        }
      }
      throw Error(ErrorKind::kInvalidArgument, "--resume: " + run.string() + " describes another run");
    }
    while (fs::exists(layer_dir(done_) / "layer.json")) ++done_;
    found_ = done_;
    return;
  }
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  io::write_file_atomic(run, fingerprint.dump(2) + "\n");
}

fs::path LayerJournal::layer_dir(int64_t layer) const {
  char name[32];
  std::snprintf(name, sizeof name, "layer-%05lld", static_cast<long long>(layer));
  return dir_ / name;
}

LayerJournal::~LayerJournal() {
  try {
    queue_->drain();
  } catch (const Error&) {
    // The failure was reported to the run at its next add() or commit(), or the run is
    // unwinding from another error: the layer it hit is simply not done.
  }
}

void LayerJournal::begin(int64_t layer) {
  GPTQ_CHECK(layer == done_ && !open_, "layer journal: layers are recorded in order");
  open_ = true;
  order_.clear();
  queue_->push(
      [writer = writer_, dir = layer_dir(layer)] {
        // A directory from a run killed while writing it: incomplete (no layer.json).
        fs::remove_all(dir);
        *writer = std::make_unique<io::CheckpointWriter>(dir, io::CheckpointWriterOptions{.max_shard_bytes = 0,
                                                                                          .background_bytes = 0});
      },
      0);
}

void LayerJournal::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                       std::span<const std::byte> data) {
  auto copy = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
  add(name, dtype, shape, *copy, copy);
}

void LayerJournal::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                       std::span<const std::byte> data, std::shared_ptr<const void> owner) {
  GPTQ_CHECK(open_, "layer journal: add outside begin/commit");
  GPTQ_CHECK(owner != nullptr, "layer journal: add without the owner of its bytes");
  queue_->push([writer = writer_, name, dtype, shape, data, owner] { (*writer)->add_tensor(name, dtype, shape, data); },
               data.size());
  order_.push_back(name);
}

void LayerJournal::commit(nlohmann::ordered_json meta) {
  GPTQ_CHECK(open_, "layer journal: commit without begin");
  GPTQ_CHECK(!order_.empty(), "layer journal: a layer adds at least its norms");
  meta["order"] = order_;
  queue_->push(
      [writer = writer_, text = meta.dump(2) + "\n"] {
        (*writer)->add_file("layer.json", text);
        (*writer)->commit();
        writer->reset();
      },
      0);
  open_ = false;
  ++done_;
}

LayerJournal::Layer LayerJournal::read(int64_t layer) const {
  GPTQ_CHECK(layer < found_, "layer journal: layer not found on disk at the start");
  const fs::path d = layer_dir(layer);
  Layer l{.tensors = std::make_unique<io::Checkpoint>(d), .meta = io::read_ordered_json_file(d / "layer.json")};
  l.order = io::json_convert<std::vector<std::string>>(l.meta.at("order"), "order", (d / "layer.json").string());
  return l;
}

void LayerJournal::remove() {
  queue_->drain();
  fs::remove_all(dir_);
}

}  // namespace gptq::quant
