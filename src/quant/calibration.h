// Calibration token samples for GPTQ: the inputs whose activations build each layer's
// Hessian.
//
// Input files are recognised by their contents, not their names:
//   gzip (magic 1f 8b)  decompressed through zlib, then classified like any other file;
//   JSONL               first non-space character '{': one JSON object per line, each a
//                       document whose text is the string field `jsonl_field` (the C4
//                       shard layout c4-train.00001-of-01024.json.gz: "text",
//                       "timestamp", "url"); blank lines are skipped;
//   plain text          documents are separated by one or more blank lines.
// Input that is not text is refused with what was found: a Parquet file (magic PAR1), any
// NUL byte (binary data, UTF-16), or more than 1% of the bytes not valid UTF-8 (the
// threshold's reasoning is beside kMaxInvalidUtf8 in calibration.cpp).
//
// Two ways to cut samples, both deterministic for a given seed on every platform
// (std::mt19937_64 is fully specified; the draws from it are our own):
//   kRandomWindows  the GPTQ paper's loader: each file's documents are joined with
//                   "\n\n" and tokenized once with the BOS template, the files' token
//                   streams are concatenated, and n_samples windows of exactly seq_len
//                   tokens start at uniformly random offsets (a window may span a file
//                   boundary). The stream must hold at least n_samples · seq_len tokens,
//                   so that windows cover distinct text on average.
//   kDocuments      one sample per document: tokenized on its own with BOS, truncated
//                   to seq_len; documents shorter than min(seq_len, 32) tokens are not
//                   eligible. n_samples documents are drawn at random among the eligible
//                   ones: documents are visited in a seeded shuffled order and tokenized
//                   lazily until enough are found, so a large corpus (a C4 shard) costs
//                   only the documents actually examined.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace gptq::quant {

enum class CalibMode { kRandomWindows, kDocuments };

struct CalibOptions {
  std::vector<std::filesystem::path> files;
  std::string jsonl_field = "text";
  int64_t n_samples = 128;
  int64_t seq_len = 2048;  // the caller passes min(2048, model context) by default
  CalibMode mode = CalibMode::kRandomWindows;
  uint64_t seed = 0;
  // Refuse a file whose (decompressed) text is larger: a guard against gzip bombs and
  // mistaken inputs. Calibration needs a few MB; 4 GiB is far beyond any sensible input.
  uint64_t max_text_bytes = uint64_t{4} << 30;
};

struct CalibSet {
  // n_samples rows of token ids; kRandomWindows: each exactly seq_len long;
  // kDocuments: each between min(seq_len, 32) and seq_len long, starting with BOS.
  std::vector<std::vector<int32_t>> samples;
  // kRandomWindows: length of the whole token stream. kDocuments: tokens (before
  // truncation) of the documents that were tokenized.
  int64_t tokens_available = 0;
  int64_t documents = 0;  // documents read from all files
  CalibMode mode = CalibMode::kRandomWindows;
  int64_t seq_len = 0;
  int64_t files = 0;
  int64_t documents_tokenized = 0;  // kDocuments: examined in shuffled order
  int64_t documents_skipped = 0;    // kDocuments: of those, too short to be eligible

  // One line for logs, e.g. "128 random windows of 2048 tokens from a stream of
  // 1083246 tokens (1 file, 1 document)".
  std::string describe() const;
};

// Throws gptq::Error: kIo (a file missing or unreadable, named), kFormat (corrupt gzip,
// malformed JSONL or a record without the string field, naming file:line),
// kInvalidArgument (bad options, a file over max_text_bytes, or too little text for the
// requested samples, with the counts).
CalibSet load_calibration(const tok::Tokenizer& tk, const CalibOptions& o);

// The same refusals for missing files and non-text input, judged on each file's first 64 KiB
// (decompressed, for gzip): lets a caller fail before starting work. load_calibration
// still judges every file whole.
void precheck_calibration_files(const std::vector<std::filesystem::path>& files);

}  // namespace gptq::quant
