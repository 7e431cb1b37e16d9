#include "io/checkpoint_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <system_error>

#include "core/error.h"
#include "io/json_file.h"

namespace gptq::io {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleShardName = "model.safetensors";
constexpr const char* kIndexName = "model.safetensors.index.json";
// Our own scratch files inside the temporary directory start with this; user files may not.
constexpr std::string_view kScratchPrefix = ".gptq-";

[[noreturn]] void fail_io(const fs::path& path, const std::string& what) {
  throw Error(ErrorKind::kIo, path.string() + ": " + what + ": " + std::strerror(errno));
}

struct ReadFd {
  explicit ReadFd(const fs::path& path) : fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd < 0) fail_io(path, "cannot open");
  }
  ~ReadFd() { ::close(fd); }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  int fd;
};

// Works for directories too: their fsync makes the names of new entries durable.
void fsync_path(const fs::path& path) {
  const ReadFd f(path);
  if (::fsync(f.fd) != 0) fail_io(path, "fsync failed");
}

void write_file_synced(const fs::path& path, std::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), std::streamsize(contents.size()));
  out.close();
  if (!out) fail_io(path, "write failed");
  fsync_path(path);
}

void rename_or_throw(const fs::path& from, const fs::path& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) fail_io(from, "cannot rename to " + to.string());
}

// `<out><tag><pid>-<random>`: beside `out`, so renames between them stay on one filesystem.
fs::path sibling_path(const fs::path& out, std::string_view tag) {
  std::random_device rd;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%ld-%08x%08x", long(::getpid()), unsigned(rd()), unsigned(rd()));
  fs::path p = out;
  p += std::string(tag) + suffix;
  return p;
}

fs::path normalize_out_dir(const fs::path& dir) {
  std::error_code ec;
  fs::path p = fs::absolute(dir, ec).lexically_normal();
  if (ec) throw Error(ErrorKind::kIo, dir.string() + ": cannot resolve: " + ec.message());
  if (!p.has_filename()) p = p.parent_path();  // "out/" names the directory "out"
  if (p.filename().empty() || p.filename() == "." || p.filename() == ".." || p == p.root_path()) {
    throw Error(ErrorKind::kInvalidArgument, dir.string() + ": not usable as an output directory");
  }
  return p;
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(fs::symlink_status(p, ec));
}

std::string shard_name(std::size_t index, std::size_t count) {
  char name[64];
  std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", index + 1, count);
  return name;
}

}  // namespace

CheckpointWriter::CheckpointWriter(fs::path out_dir, CheckpointWriterOptions options)
    : out_dir_(normalize_out_dir(out_dir)), options_(options) {
  if (path_exists(out_dir_) && !options_.overwrite) {
    throw Error(ErrorKind::kInvalidArgument, out_dir_.string() + " exists; pass --overwrite to replace it");
  }
  std::error_code ec;
  fs::create_directories(out_dir_.parent_path(), ec);
  if (ec) throw Error(ErrorKind::kIo, out_dir_.parent_path().string() + ": cannot create: " + ec.message());
  temp_dir_ = sibling_path(out_dir_, ".tmp-");
  if (!fs::create_directory(temp_dir_, ec)) {
    throw Error(ErrorKind::kIo, temp_dir_.string() + ": cannot create: " +
                                    (ec ? ec.message() : std::string("already exists")));
  }
  if (options_.background_bytes > 0) queue_ = std::make_unique<WriteQueue>(options_.background_bytes);
}

CheckpointWriter::~CheckpointWriter() {
  queue_.reset();  // the file work stops before its files go
  if (committed_) return;
  data_.close();
  std::error_code ec;
  fs::remove_all(temp_dir_, ec);
}

void CheckpointWriter::check_usable() {
  if (queue_ && !broken_ && !committed_) {
    try {
      queue_->check();
    } catch (...) {
      broken_ = true;
      throw;
    }
  }
  if (committed_) throw Error(ErrorKind::kInvalidArgument, out_dir_.string() + ": already committed");
  if (broken_) {
    throw Error(ErrorKind::kInvalidArgument,
                out_dir_.string() + ": an earlier write failed, this checkpoint cannot be completed");
  }
}

void CheckpointWriter::check_file_name(const std::string& name) const {
  const std::string where = out_dir_.string() + ": file name \"" + name + "\"";
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw Error(ErrorKind::kInvalidArgument, where + " is not a plain file name");
  }
  if (name.starts_with(kScratchPrefix) || name.ends_with(".safetensors") || name == kIndexName) {
    throw Error(ErrorKind::kInvalidArgument, where + " is reserved for the weights");
  }
  if (std::find(files_.begin(), files_.end(), name) != files_.end()) {
    throw Error(ErrorKind::kInvalidArgument, where + " added twice");
  }
}

fs::path CheckpointWriter::shard_temp_path(std::size_t shard) const {
  char name[64];
  std::snprintf(name, sizeof name, "%.*s%05zu.safetensors", int(kScratchPrefix.size()),
                kScratchPrefix.data(), shard);
  return temp_dir_ / name;
}

fs::path CheckpointWriter::data_path() const {
  return temp_dir_ / (std::string(kScratchPrefix) + "shard.data");
}

void CheckpointWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                  std::span<const std::byte> data, Lifetime lifetime) {
  add(name, dtype, shape, data, lifetime, nullptr);
}

void CheckpointWriter::add_tensor(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                                  std::span<const std::byte> data, std::shared_ptr<const void> owner) {
  GPTQ_CHECK(owner != nullptr, "checkpoint writer: add_tensor without the owner of its bytes");
  add(name, dtype, shape, data, Lifetime::kCallerKeeps, std::move(owner));
}

void CheckpointWriter::add(const std::string& name, DType dtype, const std::vector<int64_t>& shape,
                           std::span<const std::byte> data, Lifetime lifetime, std::shared_ptr<const void> owner) {
  check_usable();
  const std::string where = out_dir_.string() + ": tensor \"" + name + "\"";
  if (name.empty() || name == "__metadata__") {
    throw Error(ErrorKind::kInvalidArgument, where + " is not a valid tensor name");
  }
  if (shard_of_.contains(name)) throw Error(ErrorKind::kInvalidArgument, where + " added twice");
  const uint64_t nbytes = safetensors_nbytes(dtype, shape, name);
  if (nbytes != data.size()) {
    throw Error(ErrorKind::kInvalidArgument,
                where + " is " + std::string(dtype_name(dtype)) + " with " + std::to_string(nbytes) +
                    " bytes by its shape, but " + std::to_string(data.size()) + " bytes were given");
  }
  try {
    if (options_.max_shard_bytes > 0 && pending_bytes_ > 0 &&
        pending_bytes_ + nbytes > options_.max_shard_bytes) {
      close_shard();
    }
    if (queue_ && owner != nullptr) {
      run([this, name, data, owner] { append(name, data); }, nbytes);
    } else if (queue_ && lifetime == Lifetime::kCallerKeeps) {
      run([this, name, data] { append(name, data); }, 0);  // no copy held: counts nothing against the cap
    } else if (queue_) {
      auto copy = std::make_shared<std::vector<std::byte>>(data.begin(), data.end());
      run([this, name, copy] { append(name, *copy); }, nbytes);
    } else {
      append(name, data);
    }
    pending_.push_back({{name, dtype, shape}, pending_bytes_, nbytes});
    pending_bytes_ += nbytes;
    tensor_bytes_ += nbytes;
    shard_of_[name] = shard_count_;
  } catch (...) {
    broken_ = true;
    throw;
  }
}

void CheckpointWriter::run(std::function<void()> job, uint64_t bytes) {
  if (queue_) {
    queue_->push(std::move(job), bytes);
  } else {
    job();
  }
}

void CheckpointWriter::append(const std::string& name, std::span<const std::byte> data) {
  try {
    if (!data_.is_open()) {
      data_.open(data_path(), std::ios::binary | std::ios::trunc);
      if (!data_) fail_io(data_path(), "cannot create");
    }
    data_.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
    if (!data_) fail_io(data_path(), "write failed");
  } catch (const Error& e) {
    throw Error(e.kind(), out_dir_.string() + ": tensor \"" + name + "\": " + e.what());
  }
}

// Assembles the open shard into `.gptq-0000k.safetensors`: header, then the tensors'
// bytes copied from the data file in name order. Final names need the shard count,
// which only commit() knows.
void CheckpointWriter::close_shard() {
  std::sort(pending_.begin(), pending_.end(),
            [](const PendingTensor& a, const PendingTensor& b) { return a.entry.name < b.entry.name; });
  auto tensors = std::make_shared<std::vector<PendingTensor>>(std::move(pending_));
  run([this, shard = shard_count_, tensors] { assemble_shard(shard, std::move(*tensors)); }, 0);
  ++shard_count_;
  pending_.clear();
  pending_bytes_ = 0;
}

void CheckpointWriter::assemble_shard(std::size_t shard_index, std::vector<PendingTensor> tensors) {
  try {
    if (data_.is_open()) {
      data_.close();
      if (!data_) fail_io(data_path(), "write failed");
    }
    std::vector<SafetensorsEntry> entries;
    entries.reserve(tensors.size());
    for (const PendingTensor& t : tensors) entries.push_back(t.entry);
    // SafetensorsWriter sorts by the same unique names, so its data order is tensors'.
    SafetensorsWriter shard(shard_temp_path(shard_index), std::move(entries));
    if (!tensors.empty()) {
      const ReadFd data(data_path());
      for (const PendingTensor& t : tensors) shard.append_from(data.fd, t.offset, t.nbytes);
    }
    shard.finish();
    std::error_code ec;
    fs::remove(data_path(), ec);
    if (ec) throw Error(ErrorKind::kIo, data_path().string() + ": cannot remove: " + ec.message());
  } catch (const Error& e) {
    throw Error(e.kind(), out_dir_.string() + ": shard " + std::to_string(shard_index + 1) + ": " + e.what());
  }
}

void CheckpointWriter::add_file(const std::string& name, std::string_view contents) {
  check_usable();
  check_file_name(name);
  const fs::path path = temp_dir_ / name;
  try {
    write_file_synced(path, contents);
    files_.push_back(name);
  } catch (...) {
    broken_ = true;
    throw;
  }
}

void CheckpointWriter::copy_file(const fs::path& src, const std::string& name) {
  check_usable();
  check_file_name(name);
  std::error_code ec;
  if (!fs::is_regular_file(src, ec)) {
    throw Error(ErrorKind::kIo, src.string() + ": not a readable regular file");
  }
  const fs::path path = temp_dir_ / name;
  try {
    fs::copy_file(src, path, ec);
    if (ec) throw Error(ErrorKind::kIo, src.string() + ": cannot copy to " + path.string() + ": " + ec.message());
    fsync_path(path);
    files_.push_back(name);
  } catch (...) {
    broken_ = true;
    throw;
  }
}

CheckpointSummary CheckpointWriter::commit() {
  check_usable();
  try {
    // A checkpoint without tensors still gets its (empty) model.safetensors.
    if (!pending_.empty() || shard_count_ == 0) close_shard();
    if (queue_) queue_->drain();

    CheckpointSummary summary;
    summary.dir = out_dir_;
    summary.tensor_count = shard_of_.size();
    summary.tensor_bytes = tensor_bytes_;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < shard_count_; ++i) {
      names.push_back(shard_count_ == 1 ? std::string(kSingleShardName) : shard_name(i, shard_count_));
      rename_or_throw(shard_temp_path(i), temp_dir_ / names.back());
      summary.shards.push_back(out_dir_ / names.back());
    }
    if (shard_count_ > 1) {
      // transformers' layout: {"metadata": {"total_size": N}, "weight_map": {tensor: shard}}.
      Json index = {{"metadata", {{"total_size", tensor_bytes_}}}, {"weight_map", Json::object()}};
      for (const auto& [tensor, shard] : shard_of_) index["weight_map"][tensor] = names[shard];
      write_file_synced(temp_dir_ / kIndexName, index.dump(2) + "\n");
      summary.index = out_dir_ / kIndexName;
    }
    for (const std::string& f : files_) summary.files.push_back(out_dir_ / f);
    fsync_path(temp_dir_);

    // The output may have appeared since the constructor checked.
    const bool replacing = path_exists(out_dir_);
    if (replacing && !options_.overwrite) {
      throw Error(ErrorKind::kInvalidArgument, out_dir_.string() + " exists; pass --overwrite to replace it");
    }
    const fs::path aside = replacing ? sibling_path(out_dir_, ".old-") : fs::path();
    if (replacing) rename_or_throw(out_dir_, aside);
    if (::rename(temp_dir_.c_str(), out_dir_.c_str()) != 0) {
      const int err = errno;
      if (replacing) ::rename(aside.c_str(), out_dir_.c_str());
      errno = err;
      fail_io(temp_dir_, "cannot rename to " + out_dir_.string());
    }
    committed_ = true;
    // Past this point the new checkpoint is in place: failing to sync the parent or to
    // delete the old copy must not report the commit as failed.
    std::error_code ec;
    if (replacing) fs::remove_all(aside, ec);
    const int parent = ::open(out_dir_.parent_path().c_str(), O_RDONLY | O_CLOEXEC);
    if (parent >= 0) {
      ::fsync(parent);
      ::close(parent);
    }
    return summary;
  } catch (...) {
    broken_ = true;
    throw;
  }
}

}  // namespace gptq::io
