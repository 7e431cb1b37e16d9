#include "quant/calibration.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <span>
#include <string_view>

#include "core/error.h"
#include "io/text_input.h"
#include "tokenizer/utf8.h"

namespace gptq::quant {
namespace {

using Json = nlohmann::json;

// More invalid UTF-8 than this fraction of the bytes and the input is not taken for text.
// English in a legacy 8-bit encoding stays below it (the World English Bible written as
// Windows-1252, its curly quotes and dashes invalid: 0.65%), and such stray bytes still
// tokenize losslessly through byte fallback. Binary data lies far above (random bytes:
// 43%), as does most non-English text in a legacy encoding, which is better converted
// than calibrated on as byte tokens.
constexpr double kMaxInvalidUtf8 = 0.01;

// How much of a file precheck_calibration_files reads: enough for the fraction above to
// mean something (1% of it is 655 bytes), little enough to cost nothing. A character cut
// by the end of the window counts as up to 3 invalid bytes, nothing against those 655.
constexpr size_t kPrecheckBytes = 64 * 1024;

// Appended, not "'" + p.string() + "'": GCC 12 reports a false -Wrestrict inside
// operator+(const char*, std::string&&) at -O3 (as in model/config.cpp).
std::string quoted(const std::filesystem::path& p) {
  std::string q = "'";
  q += p.string();
  q += '\'';
  return q;
}

// Refuses bytes that are not text, naming what was found. `what` names the file (and says
// when the bytes are a decompressed or partial view of it).
void check_is_text(std::string_view bytes, const std::string& what) {
  if (bytes.starts_with("PAR1")) {
    throw Error(ErrorKind::kFormat, what + " is a Parquet file (it starts with PAR1), which gptq.cpp does not read; "
                                           "export its text column as JSONL (one {\"text\": ...} object per line) "
                                           "or as plain text");
  }
  if (const size_t nul = bytes.find('\0'); nul != std::string_view::npos) {
    const auto count = std::count(bytes.begin(), bytes.end(), '\0');
    throw Error(ErrorKind::kFormat, what + " is not text: it holds " + std::to_string(count) +
                                        " NUL bytes, the first at byte " + std::to_string(nul) +
                                        " (binary data, or UTF-16 text: convert that to UTF-8)");
  }
  size_t invalid = 0, first = 0;
  for (size_t pos = 0; pos < bytes.size();) {
    const tok::utf8::Char c = tok::utf8::decode(bytes, pos);
    if (c.cp == tok::utf8::kInvalid && invalid++ == 0) first = pos;
    pos += c.len;
  }
  if (double(invalid) > kMaxInvalidUtf8 * double(bytes.size())) {
    char pct[32];
    std::snprintf(pct, sizeof pct, "%.1f%%", 100.0 * double(invalid) / double(bytes.size()));
    throw Error(ErrorKind::kFormat, what + " is not UTF-8 text: " + std::to_string(invalid) + " of its " +
                                        std::to_string(bytes.size()) + " bytes (" + pct +
                                        ") are not valid UTF-8, the first at byte " + std::to_string(first) +
                                        "; at most 1% is taken for stray bytes in text (binary data? another "
                                        "encoding? convert it with iconv -t UTF-8)");
  }
}

// One document per record: the string field `field`. Empty texts carry nothing to
// calibrate on and are dropped.
std::vector<std::string> jsonl_documents(std::string_view text, const std::filesystem::path& p,
                                         const std::string& field) {
  std::vector<std::string> docs;
  io::for_each_line(text, [&](std::string_view line, int64_t number) {
    if (io::is_blank(line)) return;
    const std::string where = p.string() + ":" + std::to_string(number);
    Json record;
    try {
      record = Json::parse(line);
    } catch (const Json::parse_error& e) {
      throw Error(ErrorKind::kFormat, where + ": malformed JSON (" + e.what() +
                                          "); the file is read as JSONL because it starts with '{'");
    }
    if (!record.is_object())
      throw Error(ErrorKind::kFormat, where + ": expected a JSON object, got " +
                                          std::string(record.type_name()));
    const auto it = record.find(field);
    if (it == record.end())
      throw Error(ErrorKind::kFormat, where + ": record has no field \"" + field + "\"");
    if (!it->is_string())
      throw Error(ErrorKind::kFormat, where + ": field \"" + field + "\" is a " +
                                          std::string(it->type_name()) + ", not a string");
    auto& s = it->get_ref<std::string&>();
    if (!s.empty()) docs.push_back(std::move(s));
  });
  return docs;
}

// Documents are the runs of non-blank lines, their lines joined with '\n'.
std::vector<std::string> plain_documents(std::string_view text) {
  std::vector<std::string> docs;
  std::string current;
  io::for_each_line(text, [&](std::string_view line, int64_t) {
    if (io::is_blank(line)) {
      if (!current.empty()) docs.push_back(std::move(current));
      current.clear();
      return;
    }
    if (!current.empty()) current += '\n';
    current += line;
  });
  if (!current.empty()) docs.push_back(std::move(current));
  return docs;
}

std::vector<std::string> read_documents(const std::filesystem::path& p, const CalibOptions& o) {
  const std::string text = io::read_text_input(p, o.max_text_bytes, "calibration file");
  check_is_text(text, "calibration file " + quoted(p));
  const size_t first = text.find_first_not_of(" \t\r\n\f\v");
  if (first != std::string::npos && text[first] == '{') return jsonl_documents(text, p, o.jsonl_field);
  return plain_documents(text);
}

// Uniform in [0, n), n ≥ 1, by modulo with rejection: the 2^64 mod n smallest draws
// would make small residues more likely, so they are redrawn. Unlike
// std::uniform_int_distribution this gives the same values with every standard library.
uint64_t uniform_below(std::mt19937_64& rng, uint64_t n) {
  const uint64_t reject_below = (0 - n) % n;  // 2^64 mod n
  for (;;) {
    const uint64_t x = rng();
    if (x >= reject_below) return x % n;
  }
}

void check_vocab(std::span<const int32_t> ids, int32_t vocab) {
  for (const int32_t id : ids)
    if (id < 0 || id >= vocab)
      throw Error(ErrorKind::kFormat, "the tokenizer produced id " + std::to_string(id) +
                                          " outside its vocabulary of " + std::to_string(vocab));
}

std::string plural(int64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

int64_t min_document_tokens(int64_t seq_len) { return std::min<int64_t>(seq_len, 32); }

void load_windows(const tok::Tokenizer& tk, const CalibOptions& o, CalibSet& set) {
  std::vector<int32_t> stream;
  for (const auto& p : o.files) {
    std::vector<std::string> docs = read_documents(p, o);
    set.documents += static_cast<int64_t>(docs.size());
    if (docs.empty()) continue;
    // Each document is released once copied, so the peak stays near one copy of the text.
    std::string joined;
    for (auto& d : docs) {
      if (!joined.empty()) joined += "\n\n";
      joined += d;
      std::string().swap(d);
    }
    const std::vector<int32_t> ids = tk.encode(joined, tok::SpecialTokens::kAdd);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  set.tokens_available = static_cast<int64_t>(stream.size());
  check_vocab(stream, tk.vocab_size());

  const int64_t need = std::max(o.seq_len + 1, o.n_samples * o.seq_len);
  if (set.tokens_available < need)
    throw Error(ErrorKind::kInvalidArgument,
                "calibration text has " + std::to_string(set.tokens_available) + " tokens; " +
                    std::to_string(o.n_samples) + " samples x " + std::to_string(o.seq_len) +
                    " tokens need at least " + std::to_string(need) +
                    " (add text with --calib, lower --n-samples or --seq-len)");

  // As the GPTQ paper's loader: start ∈ [0, len − seq_len − 1].
  std::mt19937_64 rng(o.seed);
  const uint64_t starts = stream.size() - static_cast<uint64_t>(o.seq_len);
  set.samples.reserve(static_cast<size_t>(o.n_samples));
  for (int64_t i = 0; i < o.n_samples; ++i) {
    const auto begin = stream.begin() + static_cast<ptrdiff_t>(uniform_below(rng, starts));
    set.samples.emplace_back(begin, begin + o.seq_len);
  }
}

void load_documents(const tok::Tokenizer& tk, const CalibOptions& o, CalibSet& set) {
  std::vector<std::string> docs;
  for (const auto& p : o.files) {
    std::vector<std::string> more = read_documents(p, o);
    docs.insert(docs.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  set.documents = static_cast<int64_t>(docs.size());

  // Fisher–Yates with our own draws (std::shuffle's order is library-specific). Taking
  // the first n eligible documents of a uniform shuffle is a uniform choice among them.
  std::mt19937_64 rng(o.seed);
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[uniform_below(rng, i)]);

  const int64_t min_tokens = min_document_tokens(o.seq_len);
  for (const size_t k : order) {
    if (static_cast<int64_t>(set.samples.size()) == o.n_samples) break;
    std::vector<int32_t> ids = tk.encode(docs[k], tok::SpecialTokens::kAdd);
    ++set.documents_tokenized;
    set.tokens_available += static_cast<int64_t>(ids.size());
    if (static_cast<int64_t>(ids.size()) < min_tokens) {
      ++set.documents_skipped;
      continue;
    }
    ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(o.seq_len)));
    check_vocab(ids, tk.vocab_size());
    set.samples.push_back(std::move(ids));
  }
  if (static_cast<int64_t>(set.samples.size()) < o.n_samples)
    throw Error(ErrorKind::kInvalidArgument,
                "calibration documents: " + std::to_string(set.samples.size()) + " of " +
                    std::to_string(set.documents) + " have at least " + std::to_string(min_tokens) +
                    " tokens; " + std::to_string(o.n_samples) +
                    " samples need that many (add documents with --calib or lower --n-samples)");
}

}  // namespace

void precheck_calibration_files(const std::vector<std::filesystem::path>& files) {
  for (const auto& p : files) {
    const io::TextHead head = io::read_text_input_head(p, kPrecheckBytes, "calibration file");
    const char* view = head.gzip ? (head.whole ? " (decompressed)" : " (its first 64 KiB, decompressed)")
                                 : (head.whole ? "" : " (its first 64 KiB)");
    check_is_text(head.bytes, "calibration file " + quoted(p) + view);
  }
}

std::string CalibSet::describe() const {
  const std::string source = plural(files, "file") + ", " + plural(documents, "document");
  if (mode == CalibMode::kRandomWindows)
    return plural(static_cast<int64_t>(samples.size()), "random window") + " of " +
           std::to_string(seq_len) + " tokens from a stream of " + std::to_string(tokens_available) +
           " tokens (" + source + ")";
  int64_t tokens = 0;
  for (const auto& s : samples) tokens += static_cast<int64_t>(s.size());
  return plural(static_cast<int64_t>(samples.size()), "document") + " of at most " +
         std::to_string(seq_len) + " tokens (" + std::to_string(tokens) + " tokens in all) drawn from " +
         source + "; " + std::to_string(documents_tokenized) + " tokenized, " +
         std::to_string(documents_skipped) + " of them skipped as shorter than " +
         std::to_string(min_document_tokens(seq_len)) + " tokens";
}

CalibSet load_calibration(const tok::Tokenizer& tk, const CalibOptions& o) {
  if (o.files.empty())
    throw Error(ErrorKind::kInvalidArgument, "no calibration files given (--calib)");
  if (o.n_samples < 1 || o.seq_len < 1)
    throw Error(ErrorKind::kInvalidArgument,
                "calibration needs n_samples >= 1 and seq_len >= 1, got " +
                    std::to_string(o.n_samples) + " and " + std::to_string(o.seq_len));
  if (o.n_samples > std::numeric_limits<int64_t>::max() / o.seq_len)
    throw Error(ErrorKind::kInvalidArgument, "calibration n_samples x seq_len overflows");

  CalibSet set;
  set.mode = o.mode;
  set.seq_len = o.seq_len;
  set.files = static_cast<int64_t>(o.files.size());
  if (o.mode == CalibMode::kRandomWindows)
    load_windows(tk, o, set);
  else
    load_documents(tk, o, set);
  return set;
}

}  // namespace gptq::quant
