#include "io/safetensors_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <system_error>

#include "core/error.h"
#include "io/safetensors.h"

namespace gptq::io {

namespace fs = std::filesystem;

namespace {

[[noreturn]] void fail_io(const fs::path& path, const std::string& what) {
  throw Error(ErrorKind::kIo, path.string() + ": " + what + ": " + std::strerror(errno));
}

void write_all(int fd, const std::byte* p, std::size_t n, const fs::path& path) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail_io(path, "write failed");
    }
    p += w;
    n -= std::size_t(w);
  }
}

// u64 length | JSON | spaces up to a multiple of 8. ordered_json keeps our order:
// "__metadata__" first, then `entries` as given (sorted by the caller).
std::string encode_header(const std::vector<SafetensorsEntry>& entries,
                          const SafetensorsMetadata& metadata, const fs::path& path) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const SafetensorsEntry& e : entries) {
    const uint64_t end = offset + safetensors_nbytes(e.dtype, e.shape, e.name);
    header[e.name] = {{"dtype", std::string(dtype_name(e.dtype))},
                      {"shape", e.shape},
                      {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::type_error&) {
    throw Error(ErrorKind::kInvalidArgument,
                path.string() + ": a tensor name or metadata string is not valid UTF-8");
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxSafetensorsHeader) {
    throw Error(ErrorKind::kInvalidArgument,
                path.string() + ": header of " + std::to_string(json.size()) +
                    " bytes exceeds the readers' limit of " + std::to_string(kMaxSafetensorsHeader));
  }
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char(uint64_t(json.size()) >> (8 * i) & 0xff);
  return out + json;
}

}  // namespace

uint64_t safetensors_nbytes(DType dtype, const std::vector<int64_t>& shape, const std::string& name) {
  uint64_t n = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) {
      throw Error(ErrorKind::kInvalidArgument, "tensor \"" + name + "\" has a negative dimension");
    }
    if (d != 0 && n > std::numeric_limits<uint64_t>::max() / uint64_t(d)) {
      throw Error(ErrorKind::kInvalidArgument, "tensor \"" + name + "\" shape overflows");
    }
    n *= uint64_t(d);
  }
  return n;
}

SafetensorsWriter::SafetensorsWriter(fs::path path, std::vector<SafetensorsEntry> entries,
                                     const SafetensorsMetadata& metadata)
    : path_(std::move(path)), entries_(std::move(entries)) {
  std::sort(entries_.begin(), entries_.end(),
            [](const SafetensorsEntry& a, const SafetensorsEntry& b) { return a.name < b.name; });
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::string& name = entries_[i].name;
    if (name.empty() || name == "__metadata__") {
      throw Error(ErrorKind::kInvalidArgument, path_.string() + ": invalid tensor name \"" + name + "\"");
    }
    if (i > 0 && entries_[i - 1].name == name) {
      throw Error(ErrorKind::kInvalidArgument, path_.string() + ": tensor \"" + name + "\" given twice");
    }
    data_bytes_ += safetensors_nbytes(entries_[i].dtype, entries_[i].shape, name);
  }
  const std::string header = encode_header(entries_, metadata, path_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_io(path_, "cannot create");
  write_all(fd_, reinterpret_cast<const std::byte*>(header.data()), header.size(), path_);
}

SafetensorsWriter::~SafetensorsWriter() {
  if (fd_ < 0) return;
  ::close(fd_);
  std::error_code ec;
  fs::remove(path_, ec);
}

void SafetensorsWriter::reserve(uint64_t count) {
  if (count > data_bytes_ - written_) {
    throw Error(ErrorKind::kInvalidArgument,
                path_.string() + ": appending " + std::to_string(count) + " bytes runs past the " +
                    std::to_string(data_bytes_) + "-byte data section the header declares");
  }
  written_ += count;
}

void SafetensorsWriter::append(std::span<const std::byte> bytes) {
  reserve(bytes.size());
  write_all(fd_, bytes.data(), bytes.size(), path_);
}

void SafetensorsWriter::append_from(int src_fd, uint64_t offset, uint64_t count) {
  reserve(count);
  auto off = off64_t(offset);
  while (count > 0) {
    const ssize_t n = ::copy_file_range(src_fd, &off, fd_, nullptr, count, 0);
    if (n > 0) {
      count -= uint64_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      throw Error(ErrorKind::kIo, path_.string() + ": source file ended " + std::to_string(count) +
                                      " bytes early while copying tensor data");
    }
    // Kernels or filesystems without copy_file_range between these files: copy by hand.
    if (errno != EXDEV && errno != ENOSYS && errno != EINVAL && errno != EOPNOTSUPP) {
      fail_io(path_, "copying tensor data failed");
    }
    std::vector<std::byte> buffer(std::min<uint64_t>(count, 1u << 20));
    while (count > 0) {
      const ssize_t r = ::pread(src_fd, buffer.data(), std::min<uint64_t>(count, buffer.size()), off);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) fail_io(path_, "reading tensor data to copy failed");
      if (r == 0) {
        throw Error(ErrorKind::kIo, path_.string() + ": source file ended " + std::to_string(count) +
                                        " bytes early while copying tensor data");
      }
      write_all(fd_, buffer.data(), std::size_t(r), path_);
      off += r;
      count -= uint64_t(r);
    }
  }
}

void SafetensorsWriter::finish() {
  if (written_ != data_bytes_) {
    throw Error(ErrorKind::kInvalidArgument,
                path_.string() + ": " + std::to_string(written_) + " data bytes written, the header declares " +
                    std::to_string(data_bytes_));
  }
  if (::fsync(fd_) != 0) fail_io(path_, "fsync failed");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    std::error_code ec;
    fs::remove(path_, ec);
    fail_io(path_, "close failed");
  }
}

void write_safetensors(const fs::path& path, std::vector<SafetensorsTensor> tensors,
                       const SafetensorsMetadata& metadata) {
  std::vector<SafetensorsEntry> entries;
  entries.reserve(tensors.size());
  for (const SafetensorsTensor& t : tensors) {
    const uint64_t expected = safetensors_nbytes(t.dtype, t.shape, t.name);
    if (expected != t.data.size()) {
      throw Error(ErrorKind::kInvalidArgument,
                  path.string() + ": tensor \"" + t.name + "\" is " + std::string(dtype_name(t.dtype)) +
                      " with " + std::to_string(expected) + " bytes by its shape, but " +
                      std::to_string(t.data.size()) + " bytes were given");
    }
    entries.push_back({t.name, t.dtype, t.shape});
  }
  SafetensorsWriter writer(path, std::move(entries), metadata);
  std::sort(tensors.begin(), tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) { return a.name < b.name; });
  for (const SafetensorsTensor& t : tensors) writer.append(t.data);
  writer.finish();
}

}  // namespace gptq::io
