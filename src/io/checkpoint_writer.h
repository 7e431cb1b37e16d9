// Writing a Hugging Face checkpoint directory (what io::Checkpoint reads), all or
// nothing: everything goes into a sibling temporary directory that is renamed onto
// the output only by commit(), so an interrupted run leaves no half checkpoint.
//
// Tensors are streamed: each is appended to the current shard's data file on disk and
// only its header entry stays in memory. Closing a shard writes its header and then
// copies the data into the shard file in name order (copy_file_range, so inside the
// kernel). I/O cost: every tensor byte is written twice and read once; extra disk
// space: one shard's data while that shard is being closed.
//
// The file work (appending tensor bytes, closing shards) runs on a background thread
// (io/write_queue.h) so that it overlaps the caller's next computation: add_tensor checks
// its arguments, copies the bytes and returns; at most
// CheckpointWriterOptions::background_bytes of copies wait at once. An I/O error on
// that thread surfaces at the next add_tensor / add_file / copy_file / commit, as the
// kIo error naming the tensor (or shard); commit() waits for everything queued. The
// files are the same, byte for byte, with or without the thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "io/safetensors_writer.h"
#include "io/write_queue.h"

namespace gptq::io {

struct CheckpointWriterOptions {
  // A shard is closed before a tensor that would take its data past this many bytes
  // (a tensor larger than that gets a shard of its own); 0 = one shard, no limit.
  uint64_t max_shard_bytes = 4'000'000'000;
  // Replace an existing output directory (only once commit() succeeds).
  bool overwrite = false;
  // Tensor bytes queued for the background writer at most (add_tensor waits beyond
  // that); 0: every write happens inside add_tensor, on the caller's thread.
  uint64_t background_bytes = uint64_t{1} << 30;
};

struct CheckpointSummary {
  std::filesystem::path dir;
  std::vector<std::filesystem::path> shards;  // model.safetensors, or model-0000i-of-0000N
  std::filesystem::path index;                // model.safetensors.index.json; empty if one shard
  std::vector<std::filesystem::path> files;   // added by add_file / copy_file
  std::size_t tensor_count = 0;
  uint64_t tensor_bytes = 0;                  // sum of tensor data, the index's total_size
};

class CheckpointWriter {
 public:
  // Throws kInvalidArgument if `out_dir` exists and !options.overwrite; kIo if the
  // temporary directory `<out_dir>.tmp-<pid>-<random>` cannot be created.
  explicit CheckpointWriter(std::filesystem::path out_dir, CheckpointWriterOptions options = {});
  // Without a successful commit(), removes the temporary directory and everything in it.
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Throws kInvalidArgument naming the tensor if `data` is not dtype × shape bytes or the
  // name was already added; the writer stays usable after such an argument error. Any
  // I/O failure (kIo) leaves the writer unusable: later calls throw, nothing is committed.
  // `lifetime`: kCopied (the bytes are copied when they are written later, on the
  // background thread); kCallerKeeps: the caller keeps `data` valid until commit() (a
  // source checkpoint's memory map), so a large unquantized tensor is not copied first.
  enum class Lifetime { kCopied, kCallerKeeps };
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  std::span<const std::byte> data, Lifetime lifetime = Lifetime::kCopied);
  // The same without a copy: `owner` keeps `data` valid, and the writer holds it until the
  // bytes are written (counted against background_bytes meanwhile, as a copy would be).
  void add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                  std::span<const std::byte> data, std::shared_ptr<const void> owner);
  // A plain file beside the weights (config.json, tokenizer.json, quant_log.json, ...).
  // `name` must be a plain file name, not a weights file name, not added before.
  void add_file(const std::string& name, std::string_view contents);
  void copy_file(const std::filesystem::path& src, const std::string& name);

  // Closes the last shard, names the shards, writes the index when there are several,
  // fsyncs, then renames the temporary directory onto the output (moving an existing
  // one aside first and deleting it afterwards when overwriting).
  CheckpointSummary commit();

 private:
  struct PendingTensor {
    SafetensorsEntry entry;
    uint64_t offset = 0;  // into the shard's data file
    uint64_t nbytes = 0;
  };

  // Throws the background writer's error, if any (marking the writer broken), then as
  // check_usable.
  void check_usable();
  void check_file_name(const std::string& name) const;
  std::filesystem::path shard_temp_path(std::size_t shard) const;
  std::filesystem::path data_path() const;  // the open shard's tensor bytes, in add order
  // Queues the closing of the open shard (pending_, as shard shard_count_).
  void close_shard();
  // File work, on the queue's thread (or inline without one), touching data_ only.
  void append(const std::string& name, std::span<const std::byte> data);
  void assemble_shard(std::size_t shard, std::vector<PendingTensor> tensors);
  // add_tensor's checks and bookkeeping; `owner` (when not null) keeps `data` valid.
  void add(const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data,
           Lifetime lifetime, std::shared_ptr<const void> owner);
  // Runs `job` (holding `bytes`) on the queue, or now without one.
  void run(std::function<void()> job, uint64_t bytes);

  std::filesystem::path out_dir_;
  std::filesystem::path temp_dir_;
  CheckpointWriterOptions options_;
  bool committed_ = false;
  bool broken_ = false;  // an I/O error happened part-way; the temp dir is garbage

  std::size_t shard_count_ = 0;              // closed shards
  std::vector<PendingTensor> pending_;       // tensors of the open shard
  uint64_t pending_bytes_ = 0;
  std::ofstream data_;                       // the open shard's data file (the file work's)
  std::map<std::string, std::size_t> shard_of_;  // tensor -> shard number (0-based)
  uint64_t tensor_bytes_ = 0;
  std::vector<std::string> files_;
  std::unique_ptr<WriteQueue> queue_;  // null: background_bytes 0; last, so it stops first
};

}  // namespace gptq::io
