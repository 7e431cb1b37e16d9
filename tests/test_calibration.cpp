// Calibration samples: file formats (plain text, JSONL, gzip, detected by content),
// random windows and whole-document samples, determinism, and the errors users see.
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"
#include "quant/calibration.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using quant::CalibMode;
using quant::CalibOptions;
using quant::CalibSet;
using quant::load_calibration;
using Samples = std::vector<std::vector<int32_t>>;

const tok::Tokenizer& tokenizer() {
  static const tok::Tokenizer tk = tok::Tokenizer::load(test::stories15m_dir() / "tokenizer.json");
  return tk;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  EXPECT_TRUE(in.good()) << p;
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// The first n stories of the bundled samples file (stories are separated by one blank line).
std::vector<std::string> stories(size_t n) {
  const std::string text = read_file(test::source_dir() / "data" / "stories15M-samples.txt");
  std::vector<std::string> out;
  size_t pos = 0;
  while (out.size() < n && pos < text.size()) {
    const size_t end = std::min(text.find("\n\n", pos), text.size());
    out.push_back(text.substr(pos, end - pos));
    pos = end + 2;
  }
  EXPECT_EQ(out.size(), n);
  return out;
}

std::string join(const std::vector<std::string>& docs, const std::string& sep) {
  std::string out;
  for (const auto& d : docs) out += (out.empty() ? "" : sep) + d;
  return out;
}

void write_gzip(const std::filesystem::path& p, const std::string& bytes) {
  gzFile f = gzopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

// Where `sample` occurs in `stream`, or -1.
int64_t offset_in(const std::vector<int32_t>& stream, const std::vector<int32_t>& sample) {
  const auto it = std::search(stream.begin(), stream.end(), sample.begin(), sample.end());
  return it == stream.end() ? -1 : it - stream.begin();
}

// Runs f, expecting gptq::Error of `kind` whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, ErrorKind kind, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& part : parts) EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "'" << part << "' not in: " << e.what();
  }
}

void expect_in_vocab(const Samples& samples) {
  for (const auto& s : samples)
    for (const int32_t id : s) ASSERT_TRUE(id >= 0 && id < tokenizer().vocab_size()) << id;
}

TEST(Calibration, PlainTextWindowsAreSeededSlicesOfTheStream) {
  test::TempDir dir;
  const std::string text = join(stories(40), "\n\n");
  const auto path = dir.write("stories.txt", text);
  const std::vector<int32_t> stream = tokenizer().encode(text, tok::SpecialTokens::kAdd);

  const CalibOptions opts{.files = {path}, .n_samples = 16, .seq_len = 64, .seed = 7};
  const CalibSet set = load_calibration(tokenizer(), opts);
  ASSERT_EQ(set.samples.size(), 16u);
  EXPECT_EQ(set.tokens_available, int64_t(stream.size()));
  EXPECT_EQ(set.documents, 40);
  expect_in_vocab(set.samples);
  std::set<int64_t> offsets;
  for (const auto& s : set.samples) {
    ASSERT_EQ(s.size(), 64u);
    const int64_t at = offset_in(stream, s);
    EXPECT_GE(at, 0) << "window is not a contiguous slice of the tokenized text";
    offsets.insert(at);
  }
  EXPECT_GT(offsets.size(), 12u) << "windows should start at spread-out random offsets";
  // The draws are our own over std::mt19937_64, so these offsets are the same on every
  // platform and standard library: rng() % (10239 − 64) for seed 7, computed separately
  // (at this n the rejection step never triggers).
  EXPECT_EQ(offset_in(stream, set.samples[0]), 5665);
  EXPECT_EQ(offset_in(stream, set.samples[1]), 7300);
  EXPECT_EQ(offset_in(stream, set.samples[2]), 5278);

  EXPECT_EQ(load_calibration(tokenizer(), opts).samples, set.samples);
  CalibOptions other = opts;
  other.seed = 8;
  EXPECT_NE(load_calibration(tokenizer(), other).samples, set.samples);
  EXPECT_NE(set.describe().find("16 random windows of 64 tokens"), std::string::npos) << set.describe();
}

TEST(Calibration, PlainTextSplitsAtRunsOfBlankLines) {
  test::TempDir dir;
  // CRLF line ends, a whitespace-only line and several blank lines in a row all separate
  // documents; single newlines inside a document are kept.
  const auto path = dir.write("docs.txt", "\n\nOnce upon a time\r\nthere was a cat.\r\n\r\n  \t\n\n"
                                          "The dog ran.\n\n\n\nThe end.\n");
  const std::vector<int32_t> stream = tokenizer().encode(
      "Once upon a time\nthere was a cat.\n\nThe dog ran.\n\nThe end.", tok::SpecialTokens::kAdd);
  const int64_t len = int64_t(stream.size()) - 1;
  const CalibSet set = load_calibration(tokenizer(), {.files = {path}, .n_samples = 1, .seq_len = len});
  EXPECT_EQ(set.documents, 3);
  EXPECT_EQ(set.tokens_available, int64_t(stream.size()));
  ASSERT_EQ(set.samples.size(), 1u);
  EXPECT_EQ(set.samples[0], std::vector<int32_t>(stream.begin(), stream.begin() + len));
}

TEST(Calibration, JsonlWithCustomFieldMatchesPlainText) {
  test::TempDir dir;
  const auto docs = stories(40);
  std::string jsonl;
  for (size_t i = 0; i < docs.size(); ++i)
    jsonl += nlohmann::json{{"id", i}, {"content", docs[i]}}.dump() + "\n" + (i % 7 == 0 ? "\n" : "");
  // Named .txt: the format comes from the content.
  const auto jsonl_path = dir.write("records.txt", jsonl);
  const auto text_path = dir.write("stories.txt", join(docs, "\n\n"));

  const CalibOptions opts{.files = {jsonl_path}, .jsonl_field = "content", .n_samples = 8, .seq_len = 128};
  const CalibSet from_jsonl = load_calibration(tokenizer(), opts);
  EXPECT_EQ(from_jsonl.documents, 40);
  CalibOptions plain = opts;
  plain.files = {text_path};
  EXPECT_EQ(from_jsonl.samples, load_calibration(tokenizer(), plain).samples);

  CalibOptions default_field = opts;
  default_field.jsonl_field = "text";
  expect_error([&] { load_calibration(tokenizer(), default_field); }, ErrorKind::kFormat,
               {"records.txt:1", "\"text\""});
}

TEST(Calibration, GzippedJsonlMatchesUncompressed) {
  test::TempDir dir;
  std::string jsonl;
  for (const auto& doc : stories(40))
    jsonl += nlohmann::json{{"text", doc}, {"timestamp", "2019-04-25T12:57:54Z"},
                            {"url", "https://example.com/"}}.dump() + "\n";
  const auto plain_path = dir.write("c4-train.00001-of-01024.json", jsonl);
  const auto gz_path = dir.path() / "c4-train.00001-of-01024.json.gz";
  write_gzip(gz_path, jsonl);
  ASSERT_LT(std::filesystem::file_size(gz_path), jsonl.size());

  const CalibOptions opts{.files = {gz_path}, .n_samples = 8, .seq_len = 128, .seed = 3};
  const CalibSet from_gz = load_calibration(tokenizer(), opts);
  EXPECT_EQ(from_gz.documents, 40);
  CalibOptions plain = opts;
  plain.files = {plain_path};
  EXPECT_EQ(from_gz.samples, load_calibration(tokenizer(), plain).samples);
}

TEST(Calibration, TruncatedGzipIsFormatError) {
  test::TempDir dir;
  const auto gz_path = dir.path() / "cut.gz";
  write_gzip(gz_path, join(stories(40), "\n\n"));
  const std::string bytes = read_file(gz_path);
  const auto cut = dir.write("cut.gz", bytes.substr(0, bytes.size() / 2));
  expect_error([&] { load_calibration(tokenizer(), {.files = {cut}, .n_samples = 1, .seq_len = 8}); },
               ErrorKind::kFormat, {"cut.gz", "gzip"});
}

TEST(Calibration, MalformedJsonlLineIsNamed) {
  test::TempDir dir;
  const auto path = dir.write("bad.jsonl", "{\"text\": \"fine\"}\n\n{\"text\": \"unterminated}\n");
  expect_error([&] { load_calibration(tokenizer(), {.files = {path}, .n_samples = 1, .seq_len = 2}); },
               ErrorKind::kFormat, {"bad.jsonl:3", "malformed JSON"});
}

TEST(Calibration, RecordsWithoutTheStringFieldAreNamed) {
  test::TempDir dir;
  const auto missing = dir.write("missing.jsonl", "{\"text\": \"a\"}\n{\"body\": \"b\"}\n");
  expect_error([&] { load_calibration(tokenizer(), {.files = {missing}, .n_samples = 1, .seq_len = 2}); },
               ErrorKind::kFormat, {"missing.jsonl:2", "no field \"text\""});
  const auto number = dir.write("number.jsonl", "{\"text\": 5}\n");
  expect_error([&] { load_calibration(tokenizer(), {.files = {number}, .n_samples = 1, .seq_len = 2}); },
               ErrorKind::kFormat, {"number.jsonl:1", "not a string"});
  const auto array = dir.write("array.jsonl", "{\"text\": \"a\"}\n[\"text\"]\n");
  expect_error([&] { load_calibration(tokenizer(), {.files = {array}, .n_samples = 1, .seq_len = 2}); },
               ErrorKind::kFormat, {"array.jsonl:2", "expected a JSON object"});
}

TEST(Calibration, TooLittleTextGivesTheCounts) {
  test::TempDir dir;
  const std::string text = join(stories(3), "\n\n");
  const auto path = dir.write("short.txt", text);
  const auto have = tokenizer().encode(text, tok::SpecialTokens::kAdd).size();
  expect_error([&] { load_calibration(tokenizer(), {.files = {path}, .n_samples = 128, .seq_len = 256}); },
               ErrorKind::kInvalidArgument,
               {"calibration text has " + std::to_string(have) +
                " tokens; 128 samples x 256 tokens need at least 32768 (add text with --calib, "
                "lower --n-samples or --seq-len)"});
  // One window still needs seq_len + 1 tokens, so that there is a choice of start.
  expect_error([&] {
    load_calibration(tokenizer(), {.files = {path}, .n_samples = 1, .seq_len = int64_t(have)});
  }, ErrorKind::kInvalidArgument, {"need at least " + std::to_string(have + 1)});
}

TEST(Calibration, DocumentsAreTruncatedAndShortOnesSkipped) {
  test::TempDir dir;
  std::vector<std::string> docs = stories(12);
  docs.insert(docs.begin() + 3, "The end.");
  docs.insert(docs.begin() + 7, "Hi.");
  const auto path = dir.write("docs.txt", join(docs, "\n\n\n"));

  // 12 stories are eligible (each well over 32 tokens); ask for all of them.
  const CalibOptions opts{.files = {path}, .n_samples = 12, .seq_len = 64, .mode = CalibMode::kDocuments};
  const CalibSet set = load_calibration(tokenizer(), opts);
  ASSERT_EQ(set.samples.size(), 12u);
  EXPECT_EQ(set.documents, 14);
  EXPECT_EQ(set.documents_tokenized, 14);
  EXPECT_EQ(set.documents_skipped, 2);
  expect_in_vocab(set.samples);
  std::set<std::vector<int32_t>> expected;
  for (const auto& d : stories(12)) {
    auto ids = tokenizer().encode(d, tok::SpecialTokens::kAdd);
    ASSERT_GT(ids.size(), 64u);
    ids.resize(64);
    expected.insert(ids);
  }
  for (const auto& s : set.samples) {
    ASSERT_EQ(s.size(), 64u);
    EXPECT_EQ(s[0], 1) << "documents start with BOS";
  }
  EXPECT_EQ(std::set<std::vector<int32_t>>(set.samples.begin(), set.samples.end()), expected);
  EXPECT_NE(set.describe().find("2 of them skipped as shorter than 32 tokens"), std::string::npos)
      << set.describe();

  // Fewer than the eligible: a seeded random choice, in a seeded order.
  CalibOptions some = opts;
  some.n_samples = 4;
  const Samples a = load_calibration(tokenizer(), some).samples;
  EXPECT_EQ(a, load_calibration(tokenizer(), some).samples);
  some.seed = 1;
  EXPECT_NE(a, load_calibration(tokenizer(), some).samples);

  // A document longer than seq_len is kept whole up to seq_len; shorter ones keep their length.
  const auto one = dir.write("one.txt", "The end.\n\n" + docs[0]);
  const auto full = tokenizer().encode(docs[0], tok::SpecialTokens::kAdd);
  const CalibSet whole = load_calibration(
      tokenizer(), {.files = {one}, .n_samples = 1, .seq_len = 4096, .mode = CalibMode::kDocuments});
  ASSERT_EQ(whole.samples.size(), 1u);
  EXPECT_EQ(whole.samples[0], full);
}

TEST(Calibration, TooFewEligibleDocumentsGivesTheCounts) {
  test::TempDir dir;
  std::vector<std::string> docs = stories(2);
  docs.push_back("Hi.");
  docs.push_back("The end.");
  docs.push_back("Yes.");
  const auto path = dir.write("few.txt", join(docs, "\n\n"));
  expect_error([&] {
    load_calibration(tokenizer(), {.files = {path}, .n_samples = 3, .seq_len = 64, .mode = CalibMode::kDocuments});
  }, ErrorKind::kInvalidArgument, {"2 of 5 have at least 32 tokens; 3 samples need that many"});
  // With seq_len under 32 the bar is seq_len itself.
  const CalibSet set = load_calibration(
      tokenizer(), {.files = {path}, .n_samples = 2, .seq_len = 3, .mode = CalibMode::kDocuments});
  for (const auto& s : set.samples) EXPECT_EQ(s.size(), 3u);
}

TEST(Calibration, MissingFileIsIoErrorNamingIt) {
  test::TempDir dir;
  const auto path = dir.path() / "no-such-file.jsonl.gz";
  expect_error([&] { load_calibration(tokenizer(), {.files = {path}}); }, ErrorKind::kIo,
               {path.string()});
  expect_error([&] { load_calibration(tokenizer(), {.files = {dir.path()}}); }, ErrorKind::kIo,
               {dir.path().string()});
}

TEST(Calibration, OversizedTextIsRefused) {
  test::TempDir dir;
  const std::string text = join(stories(10), "\n\n");
  ASSERT_GT(text.size(), 4000u);
  const auto plain = dir.write("big.txt", text);
  const auto gz = dir.path() / "bomb.gz";
  write_gzip(gz, text);
  for (const auto& p : {plain, gz})
    expect_error([&] {
      load_calibration(tokenizer(), {.files = {p}, .n_samples = 1, .seq_len = 8, .max_text_bytes = 4000});
    }, ErrorKind::kInvalidArgument, {p.filename().string(), "more than 4000 bytes"});
}

TEST(Calibration, BadOptionsAreRejected) {
  test::TempDir dir;
  const auto path = dir.write("a.txt", join(stories(3), "\n\n"));
  expect_error([&] { load_calibration(tokenizer(), {}); }, ErrorKind::kInvalidArgument, {"no calibration files"});
  expect_error([&] { load_calibration(tokenizer(), {.files = {path}, .n_samples = 0}); },
               ErrorKind::kInvalidArgument, {"n_samples"});
  expect_error([&] { load_calibration(tokenizer(), {.files = {path}, .seq_len = 0}); },
               ErrorKind::kInvalidArgument, {"seq_len"});
}

// Input that is not text: refused with the file and what was found, never calibrated on.
TEST(Calibration, BinaryInputIsRefused) {
  test::TempDir dir;
  std::mt19937 rng(7);
  std::string random(200000, '\0');
  for (char& c : random) c = static_cast<char>(rng() & 0xFF);
  std::string no_nul = random;
  std::replace(no_nul.begin(), no_nul.end(), '\0', 'x');
  const auto bin = dir.write("random.bin", random);
  const auto bin_no_nul = dir.write("random-no-nul.bin", no_nul);
  const auto gz = dir.path() / "random.bin.gz";
  write_gzip(gz, random);
  std::u16string u16 = u"Once upon a time there was a cat.\n";
  const auto utf16 = dir.write("utf16.txt", std::string(reinterpret_cast<const char*>(u16.data()), u16.size() * 2));
  const auto parquet = dir.write("train-00000-of-00001.parquet", std::string("PAR1\x15\x04\x15", 7) + no_nul + "PAR1");
  const CalibOptions base{.n_samples = 1, .seq_len = 8};
  auto load = [&](const std::filesystem::path& p) {
    CalibOptions o = base;
    o.files = {p};
    load_calibration(tokenizer(), o);
  };
  for (const auto& p : {bin, utf16}) {
    expect_error([&] { load(p); }, ErrorKind::kFormat, {p.string(), "is not text", "NUL bytes"});
    expect_error([&] { quant::precheck_calibration_files({p}); }, ErrorKind::kFormat, {p.string(), "NUL bytes"});
  }
  // Random bytes without NULs: about 43% of them are not valid UTF-8.
  expect_error([&] { load(bin_no_nul); }, ErrorKind::kFormat, {"random-no-nul.bin", "not UTF-8 text", "%) are not valid UTF-8"});
  expect_error([&] { quant::precheck_calibration_files({bin_no_nul}); }, ErrorKind::kFormat,
               {"random-no-nul.bin' (its first 64 KiB)", "not UTF-8 text"});
  expect_error([&] { load(gz); }, ErrorKind::kFormat, {"random.bin.gz' is not text", "NUL bytes"});
  expect_error([&] { quant::precheck_calibration_files({gz}); }, ErrorKind::kFormat,
               {"random.bin.gz' (its first 64 KiB, decompressed) is not text"});
  expect_error([&] { load(parquet); }, ErrorKind::kFormat, {"train-00000-of-00001.parquet", "is a Parquet file"});
  expect_error([&] { quant::precheck_calibration_files({parquet}); }, ErrorKind::kFormat, {"is a Parquet file"});
  expect_error([&] { quant::precheck_calibration_files({dir.path() / "absent.txt"}); }, ErrorKind::kIo,
               {"absent.txt' does not exist"});
}

// The threshold: up to 1% of the bytes may be invalid UTF-8 (stray bytes in real text).
TEST(Calibration, InvalidUtf8ThresholdIsOnePercent) {
  test::TempDir dir;
  const std::string text = join(stories(20), "\n\n");
  // Text with a stray 0xFF byte after every `every` bytes: 1/(every+1) of the bytes invalid.
  auto with_stray_bytes = [&](size_t every) {
    std::string out;
    for (size_t i = 0; i < text.size(); ++i) {
      out += text[i];
      if (i % every == every - 1) out += '\xFF';
    }
    return out;
  };
  const auto below = dir.write("below.txt", with_stray_bytes(110));  // 0.90%
  const auto above = dir.write("above.txt", with_stray_bytes(90));   // 1.10%
  EXPECT_NO_THROW(load_calibration(tokenizer(), {.files = {below}, .n_samples = 2, .seq_len = 64}));
  EXPECT_NO_THROW(quant::precheck_calibration_files({below}));
  expect_error([&] { load_calibration(tokenizer(), {.files = {above}, .n_samples = 2, .seq_len = 64}); },
               ErrorKind::kFormat, {"above.txt", "(1.1%) are not valid UTF-8", "at most 1%"});
}

// The precheck reads only the start; load_calibration judges the whole file.
TEST(Calibration, NulBytesLateInTheFileAreFoundByTheFullRead) {
  test::TempDir dir;
  std::string text = join(stories(200), "\n\n");
  ASSERT_GT(text.size(), 70000u);
  text += std::string(3, '\0');
  const auto p = dir.write("late.txt", text);
  EXPECT_NO_THROW(quant::precheck_calibration_files({p}));
  expect_error([&] { load_calibration(tokenizer(), {.files = {p}, .n_samples = 1, .seq_len = 8}); },
               ErrorKind::kFormat, {"late.txt' is not text: it holds 3 NUL bytes, the first at byte " +
                                    std::to_string(text.size() - 3)});
}

// The realistic case: the bundled calibration text, 128 windows of 256 tokens.
TEST(Calibration, WebBible128x256) {
  const auto start = std::chrono::steady_clock::now();
  const CalibSet set = load_calibration(
      tokenizer(), {.files = {test::source_dir() / "data" / "web-bible.txt"}, .n_samples = 128, .seq_len = 256});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(set.samples.size(), 128u);
  for (const auto& s : set.samples) ASSERT_EQ(s.size(), 256u);
  expect_in_vocab(set.samples);
  EXPECT_GE(set.tokens_available, 128 * 256);
  std::cout << set.describe() << " in " << seconds << " s\n";
  ::testing::Test::RecordProperty("seconds", std::to_string(seconds));
  ::testing::Test::RecordProperty("tokens", std::to_string(set.tokens_available));
}

}  // namespace
}  // namespace gptq
