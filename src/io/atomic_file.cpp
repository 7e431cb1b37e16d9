#include "io/atomic_file.h"

#include <unistd.h>

#include <cstdio>
#include <random>

#include "core/error.h"

namespace gptq::io {

AtomicFile::AtomicFile(std::filesystem::path dest) : dest_(std::move(dest)) {
  std::random_device rd;
  temp_ = dest_;
  temp_ += ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(rd());
  out_.open(temp_, std::ios::binary | std::ios::trunc);
  if (!out_) throw Error(ErrorKind::kIo, dest_.string() + ": cannot create (temporary " + temp_.string() + ")");
}

AtomicFile::~AtomicFile() {
  if (committed_) return;
  out_.close();
  std::error_code ec;
  std::filesystem::remove(temp_, ec);
}

void AtomicFile::write(const void* data, std::size_t bytes) {
  out_.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!out_) throw Error(ErrorKind::kIo, dest_.string() + ": write failed (disk full?)");
}

void AtomicFile::commit() {
  out_.close();
  if (!out_) throw Error(ErrorKind::kIo, dest_.string() + ": write failed (disk full?)");
  if (std::rename(temp_.c_str(), dest_.c_str()) != 0) {
    throw Error(ErrorKind::kIo, temp_.string() + ": cannot rename to " + dest_.string());
  }
  committed_ = true;
}

void write_file_atomic(const std::filesystem::path& dest, std::string_view content) {
  AtomicFile f(dest);
  f.write(content.data(), content.size());
  f.commit();
}

}  // namespace gptq::io
