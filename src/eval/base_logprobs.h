// The base model's next-token distributions saved to disk, so that a quantized model
// can be compared with it later without loading the base again (gptq kld
// --save-base-logits / --base-logits).
//
// Each distribution is stored as llama.cpp's --kl-divergence-base stores it: the full
// vocabulary at 16 bits per entry. With hi the row's largest log-probability and
// lo = max(smallest, hi − 16), entry i is round((lp_i − lo)/scale), scale = (hi − lo)/65535,
// and 0 when lp_i ≤ lo; decoded lp_i = lo + scale·code. The rounding error is at most
// scale/2 ≤ 16/131070 ≈ 1.2e-4 nats per log-probability; entries more than 16 nats below
// the top (p < 1.1e-7 relative to it) all decode to lo. KL divergence leaves out terms
// with base log-probability ≤ −16 (llama.cpp's rule), live or saved alike. Unlike
// llama.cpp, each row also keeps the exact fp32 log-probability of the token it predicts,
// so the base perplexity from a file is the live one (llama.cpp's caps an improbable
// token's NLL at 16 nats or so, which moved stories15M's base ppl on its own samples by 1.5%).
//
// File layout (little-endian):
//   "GPTQKLD1"                          8 bytes
//   uint64 n, then n bytes of JSON      {"vocab", "ctx", "windows", "model", "text"}
//   int32  tokens[windows · ctx]        the windows, in order
//   per window, per row r = 0..ctx−2    float scale, float lo, float target log-prob,
//                                       uint16 code[vocab] (row r predicts token r + 1)
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "io/mapped_file.h"

namespace gptq::eval {

void encode_logprob_row(std::span<const float> logprobs, float& scale, float& lo, std::span<uint16_t> codes);
void decode_logprob_row(float scale, float lo, std::span<const uint16_t> codes, std::span<float> logprobs);

struct BaseLogprobsHeader {
  int64_t vocab = 0;
  int64_t ctx = 0;
  int64_t windows = 0;
  std::string model;  // for messages only: where the distributions came from
  std::string text;
};

class BaseLogprobsWriter {
 public:
  // tokens: windows · ctx ids. The file appears only at finish().
  BaseLogprobsWriter(const std::filesystem::path& path, const BaseLogprobsHeader& h, std::span<const int32_t> tokens);
  // One window's rows [ctx − 1, vocab] of log-probabilities, windows in order.
  void add_window(std::span<const float> logprobs);
  void finish();

 private:
  BaseLogprobsHeader h_;
  std::vector<int32_t> tokens_;
  io::AtomicFile file_;
  int64_t written_ = 0;
  std::vector<uint16_t> codes_;
};

class BaseLogprobsReader {
 public:
  // Checks the magic, the header and that the size is exactly what the header implies;
  // throws gptq::Error (kIo, kFormat) naming the file.
  explicit BaseLogprobsReader(const std::filesystem::path& path);
  const BaseLogprobsHeader& header() const { return h_; }
  std::span<const int32_t> tokens() const { return tokens_; }
  // Decodes window w's rows into logprobs ([ctx − 1, vocab]); each row's target entry is
  // the stored exact value.
  void window(int64_t w, std::vector<float>& logprobs) const;

 private:
  io::MappedFile file_;
  BaseLogprobsHeader h_;
  std::vector<int32_t> tokens_;
  std::size_t rows_offset_ = 0;
};

}  // namespace gptq::eval
