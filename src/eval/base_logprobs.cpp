#include "eval/base_logprobs.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "io/json_file.h"

namespace gptq::eval {
namespace {

constexpr char kMagic[8] = {'G', 'P', 'T', 'Q', 'K', 'L', 'D', '1'};
constexpr float kRange = 16.0f;  // nats below the top that are resolved
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxCtx = int64_t{1} << 24;

// scale, lo, the target's exact log-probability, the codes
std::size_t row_bytes(int64_t vocab) { return 3 * sizeof(float) + std::size_t(vocab) * sizeof(uint16_t); }

}  // namespace

void encode_logprob_row(std::span<const float> lp, float& scale, float& lo, std::span<uint16_t> codes) {
  const auto [mn, mx] = std::minmax_element(lp.begin(), lp.end());
  const float hi = *mx;
  lo = std::max(*mn, hi - kRange);
  scale = (hi - lo) / 65535.0f;
  if (scale == 0.0f) {
    std::fill(codes.begin(), codes.end(), uint16_t{0});
    return;
  }
  const float inv = 1.0f / scale;
  for (std::size_t i = 0; i < lp.size(); ++i) {
    codes[i] = lp[i] > lo ? uint16_t(std::min(65535.0f, std::nearbyint((lp[i] - lo) * inv))) : uint16_t{0};
  }
}

void decode_logprob_row(float scale, float lo, std::span<const uint16_t> codes, std::span<float> lp) {
  for (std::size_t i = 0; i < codes.size(); ++i) lp[i] = lo + scale * float(codes[i]);
}

BaseLogprobsWriter::BaseLogprobsWriter(const std::filesystem::path& path, const BaseLogprobsHeader& h,
                                       std::span<const int32_t> tokens)
    : h_(h), tokens_(tokens.begin(), tokens.end()), file_(path), codes_(std::size_t(h.vocab)) {
  if (int64_t(tokens.size()) != h.windows * h.ctx) {
    throw Error(ErrorKind::kInvalidArgument, "base log-probs: token count does not match windows × ctx");
  }
  const std::string json =
      nlohmann::json{{"vocab", h.vocab}, {"ctx", h.ctx}, {"windows", h.windows}, {"model", h.model}, {"text", h.text}}
          .dump();
  const uint64_t n = json.size();
  file_.write(kMagic, sizeof kMagic);
  file_.write(&n, sizeof n);
  file_.write(json.data(), json.size());
  file_.write(tokens.data(), tokens.size_bytes());
}

void BaseLogprobsWriter::add_window(std::span<const float> lp) {
  const std::size_t V = std::size_t(h_.vocab);
  if (lp.size() != std::size_t(h_.ctx - 1) * V || written_ >= h_.windows) {
    throw Error(ErrorKind::kInvalidArgument, "base log-probs: window of the wrong shape, or too many windows");
  }
  for (int64_t r = 0; r + 1 < h_.ctx; ++r) {
    float scale = 0.0f, lo = 0.0f;
    const auto row = lp.subspan(std::size_t(r) * V, V);
    encode_logprob_row(row, scale, lo, codes_);
    const float target = row[std::size_t(tokens_[std::size_t(written_ * h_.ctx + r + 1)])];
    file_.write(&scale, sizeof scale);
    file_.write(&lo, sizeof lo);
    file_.write(&target, sizeof target);
    file_.write(codes_.data(), V * sizeof(uint16_t));
  }
  ++written_;
}

void BaseLogprobsWriter::finish() {
  if (written_ != h_.windows) throw Error(ErrorKind::kInvalidArgument, "base log-probs: windows missing");
  file_.commit();
}

BaseLogprobsReader::BaseLogprobsReader(const std::filesystem::path& path) : file_(path) {
  const auto bytes = file_.bytes();
  const std::string name = path.string();
  auto fail = [&](const std::string& what) { throw Error(ErrorKind::kFormat, name + ": " + what); };
  uint64_t n = 0;
  if (bytes.size() < sizeof kMagic + sizeof n || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
    fail("not a gptq base log-probabilities file (expected magic GPTQKLD1)");
  }
  std::memcpy(&n, bytes.data() + sizeof kMagic, sizeof n);
  std::size_t off = sizeof kMagic + sizeof n;
  if (n > bytes.size() - off) fail("header length " + std::to_string(n) + " runs past the end of the file");
  const io::Json j = io::parse_json(
      std::string_view(reinterpret_cast<const char*>(bytes.data() + off), std::size_t(n)), name);
  off += std::size_t(n);
  h_.vocab = io::json_get<int64_t>(j, "vocab", name);
  h_.ctx = io::json_get<int64_t>(j, "ctx", name);
  h_.windows = io::json_get<int64_t>(j, "windows", name);
  h_.model = io::json_get_or<std::string>(j, "model", "", name);
  h_.text = io::json_get_or<std::string>(j, "text", "", name);
  if (h_.vocab < 2 || h_.vocab > kMaxVocab) fail("vocab " + std::to_string(h_.vocab) + " out of range");
  if (h_.ctx < 2 || h_.ctx > kMaxCtx) fail("ctx " + std::to_string(h_.ctx) + " out of range");
  if (h_.windows < 1) fail("windows " + std::to_string(h_.windows) + " out of range");
  // vocab and ctx are bounded above and windows is bounded by the file size before the
  // products are formed, so none of them overflows.
  const uint64_t remaining = bytes.size() - off;
  const uint64_t token_bytes = uint64_t(h_.windows) * uint64_t(h_.ctx) * sizeof(int32_t);
  const uint64_t window_bytes = uint64_t(h_.ctx - 1) * row_bytes(h_.vocab);
  if (uint64_t(h_.windows) > remaining / (window_bytes + uint64_t(h_.ctx) * sizeof(int32_t)) ||
      token_bytes + uint64_t(h_.windows) * window_bytes != remaining) {
    fail("size " + std::to_string(bytes.size()) + " bytes does not match " + std::to_string(h_.windows) +
         " windows of " + std::to_string(h_.ctx) + " tokens over a vocabulary of " + std::to_string(h_.vocab));
  }
  tokens_.resize(std::size_t(h_.windows * h_.ctx));
  std::memcpy(tokens_.data(), bytes.data() + off, std::size_t(token_bytes));
  for (std::size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i] < 0 || tokens_[i] >= h_.vocab) {
      fail("token " + std::to_string(i) + " is " + std::to_string(tokens_[i]) + ", outside the vocabulary");
    }
  }
  rows_offset_ = off + std::size_t(token_bytes);
}

void BaseLogprobsReader::window(int64_t w, std::vector<float>& lp) const {
  if (w < 0 || w >= h_.windows) throw Error(ErrorKind::kInvalidArgument, "base log-probs: no window " + std::to_string(w));
  const std::size_t V = std::size_t(h_.vocab);
  const std::size_t rows = std::size_t(h_.ctx - 1);
  lp.resize(rows * V);
  const std::byte* base = file_.bytes().data() + rows_offset_ + std::size_t(w) * rows * row_bytes(h_.vocab);
  std::vector<uint16_t> codes(V);
  for (std::size_t r = 0; r < rows; ++r) {
    const std::byte* row = base + r * row_bytes(h_.vocab);
    float scale = 0.0f, lo = 0.0f, target = 0.0f;
    std::memcpy(&scale, row, sizeof scale);
    std::memcpy(&lo, row + sizeof(float), sizeof lo);
    std::memcpy(&target, row + 2 * sizeof(float), sizeof target);
    if (!std::isfinite(scale) || !std::isfinite(lo) || scale < 0.0f || !(target <= 0.0f)) {
      throw Error(ErrorKind::kFormat, file_.path().string() + ": window " + std::to_string(w) + " row " +
                                          std::to_string(r) + " has a non-finite or negative scale, or a target "
                                          "log-probability above 0");
    }
    std::memcpy(codes.data(), row + 3 * sizeof(float), V * sizeof(uint16_t));
    decode_logprob_row(scale, lo, codes, std::span<float>(lp).subspan(r * V, V));
    lp[r * V + std::size_t(tokens_[std::size_t(w * h_.ctx) + r + 1])] = target;
  }
}

}  // namespace gptq::eval
