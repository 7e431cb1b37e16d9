// A progress line on stderr for long work: "label  [#####     ] 120/800  ETA 12s  extra".
// Redrawn in place on a terminal; on a pipe or log file, one line per 10%.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace gptq {

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true);
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& summary = "");
  double elapsed_seconds() const;

 private:
  std::string label_;
  int64_t total_;
  bool enabled_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_;
};

std::string format_duration(double seconds);  // "42s", "3m05s", "1h02m"

}  // namespace gptq
