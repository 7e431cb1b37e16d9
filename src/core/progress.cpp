#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

namespace gptq {

std::string format_duration(double s) {
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s) / 60, int(s) % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s) / 3600, (int(s) % 3600) / 60);
  }
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), tty_(::isatty(2) != 0),
      start_(std::chrono::steady_clock::now()) {}

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_ || total_ <= 0) return;
  const double frac = double(done) / double(total_);
  const int decile = int(frac * 10);
  if (!tty_ && decile == last_decile_) return;
  last_decile_ = decile;
  const double el = elapsed_seconds();
  const double eta = done > 0 ? el * double(total_ - done) / double(done) : 0.0;
  constexpr int kWidth = 24;
  const int fill = int(frac * kWidth);
  std::string bar(std::size_t(fill), '#');
  bar.resize(kWidth, ' ');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld  %s elapsed  ETA %s  %s%s", tty_ ? "\r" : "", label_.c_str(),
               bar.c_str(), (long long)done, (long long)total_, format_duration(el).c_str(),
               format_duration(eta).c_str(), extra.c_str(), tty_ ? "\033[K" : "\n");
  std::fflush(stderr);
}

void Progress::finish(const std::string& summary) {
  if (!enabled_) return;
  if (tty_) std::fprintf(stderr, "\n");
  if (!summary.empty()) std::fprintf(stderr, "%s\n", summary.c_str());
}

}  // namespace gptq
