// Calibration windows for the tests that quantize stories15M: n random windows of
// seq_len tokens from data/stories15M-samples.txt, with stories15M's tokenizer.
#pragma once

#include "quant/calibration.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace gptq::test {

inline quant::CalibSet stories_calibration(int64_t n_samples, int64_t seq_len) {
  const auto tk = tok::Tokenizer::load(stories15m_dir() / "tokenizer.json");
  return quant::load_calibration(
      tk, {.files = {source_dir() / "data" / "stories15M-samples.txt"}, .n_samples = n_samples, .seq_len = seq_len});
}

}  // namespace gptq::test
