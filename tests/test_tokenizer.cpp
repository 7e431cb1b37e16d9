// The tokenizer against the Hugging Face `tokenizers` library: the stories15M
// reference cases, and byte-level / Metaspace fixtures trained and recorded by
// scripts/make_tokenizer_fixtures.py.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace {

using gptq::tok::DecodeSpecial;
using gptq::tok::SpecialTokens;
using gptq::tok::Tokenizer;
using nlohmann::json;
namespace fs = std::filesystem;

std::vector<json> read_jsonl(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot open " << path;
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) rows.push_back(json::parse(line));
  }
  return rows;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

fs::path tokenizer_fixture(const std::string& name) { return gptq::test::fixtures_dir() / "tokenizers" / name; }

Tokenizer stories() { return Tokenizer::load(gptq::test::stories15m_dir() / "tokenizer.json"); }

TEST(Tokenizer, Stories15MReferenceIds) {
  const Tokenizer tok = stories();
  GPTQ_REQUIRE_SHARED(gptq::test::stories15m_reference());
  const auto cases = read_jsonl(gptq::test::stories15m_reference() / "tokenizer_cases.jsonl");
  ASSERT_EQ(cases.size(), 262u);
  int passed = 0;
  for (const json& c : cases) {
    const auto text = c["text"].get<std::string>();
    const auto ids = tok.encode(text);
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << "text: " << json(text).dump();
    passed += ids == c["ids"].get<std::vector<int32_t>>();
  }
  std::cout << "stories15M: " << passed << "/" << cases.size() << " cases identical\n";
}

TEST(Tokenizer, Stories15MDecodeMatchesLibrary) {
  const Tokenizer tok = stories();
  GPTQ_REQUIRE_SHARED(gptq::test::stories15m_reference());
  const auto cases = read_jsonl(gptq::test::stories15m_reference() / "tokenizer_cases.jsonl");
  const auto decoded = read_jsonl(tokenizer_fixture("stories15M") / "decoded.jsonl");
  ASSERT_EQ(cases.size(), decoded.size());
  int round_trips = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto ids = cases[i]["ids"].get<std::vector<int32_t>>();
    const auto text = cases[i]["text"].get<std::string>();
    const std::string skip = tok.decode(ids, DecodeSpecial::kSkip);
    EXPECT_EQ(skip, decoded[i]["decoded"].get<std::string>()) << "text: " << json(text).dump();
    EXPECT_EQ(tok.decode(ids, DecodeSpecial::kKeep), decoded[i]["decoded_keep"].get<std::string>())
        << "text: " << json(text).dump();
    round_trips += skip == text;
  }
  // Only texts holding literal special tokens or "▁" itself fail to round-trip.
  EXPECT_EQ(round_trips, 260);
}

TEST(Tokenizer, Stories15MBasics) {
  const Tokenizer tok = stories();
  EXPECT_EQ(tok.vocab_size(), 32000);
  EXPECT_EQ(tok.id_to_piece(1), "<s>");
  EXPECT_EQ(tok.id_to_piece(13), "<0x0A>");
  EXPECT_EQ(tok.piece_to_id("▁Once"), std::optional<int32_t>(9038));
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(9038));
  EXPECT_THROW(tok.id_to_piece(32000), gptq::Error);
  EXPECT_EQ(tok.encode("Once", SpecialTokens::kNone), std::vector<int32_t>{9038});
  EXPECT_EQ(tok.encode("<s>", SpecialTokens::kNone), std::vector<int32_t>{1});
}

TEST(Tokenizer, InvalidUtf8IsEncodedByteForByte) {
  const Tokenizer tok = stories();
  const std::string text = "ok \xff\xfe half \xe2\x96 end \xc3";
  const auto ids = tok.encode(text, SpecialTokens::kNone);
  // Each stray byte becomes its <0xNN> piece, so the bytes survive a round trip
  // through the ids (decode itself turns invalid runs into U+FFFD like the library).
  std::string bytes;
  for (const int32_t id : ids) {
    const std::string& piece = tok.id_to_piece(id);
    if (piece.size() == 6 && piece.rfind("<0x", 0) == 0) bytes += static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16));
  }
  EXPECT_EQ(bytes, "\xff\xfe\xe2\x96\xc3");
  EXPECT_NE(tok.decode(ids).find("\xEF\xBF\xBD"), std::string::npos);
}

class Fixture : public ::testing::TestWithParam<std::string> {};

TEST_P(Fixture, MatchesLibrary) {
  const fs::path dir = tokenizer_fixture(GetParam());
  const Tokenizer tok = Tokenizer::load(dir / "tokenizer.json");
  const auto cases = read_jsonl(dir / "cases.jsonl");
  ASSERT_GE(cases.size(), 100u);
  int passed = 0;
  for (const json& c : cases) {
    const auto text = c["text"].get<std::string>();
    const auto ids = tok.encode(text);
    const auto plain = tok.encode(text, SpecialTokens::kNone);
    const auto expected = c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(ids, expected) << "text: " << json(text).dump();
    EXPECT_EQ(plain, c["ids_plain"].get<std::vector<int32_t>>()) << "text: " << json(text).dump();
    const std::string skip = tok.decode(expected, DecodeSpecial::kSkip);
    const std::string keep = tok.decode(expected, DecodeSpecial::kKeep);
    EXPECT_EQ(skip, c["decoded"].get<std::string>()) << "text: " << json(text).dump();
    EXPECT_EQ(keep, c["decoded_keep"].get<std::string>()) << "text: " << json(text).dump();
    passed += ids == expected && skip == c["decoded"] && keep == c["decoded_keep"];
  }
  std::cout << GetParam() << ": " << passed << "/" << cases.size() << " cases identical\n";
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Fixture, ::testing::Values("gpt2", "llama3", "qwen2", "metaspace"));

TEST(Tokenizer, Llama3IgnoreMergesKeepsWholeWords) {
  const Tokenizer tok = Tokenizer::load(tokenizer_fixture("llama3") / "tokenizer.json");
  const auto id = tok.piece_to_id("ĠJerusalem");
  ASSERT_TRUE(id.has_value());
  EXPECT_EQ(tok.encode(" Jerusalem", SpecialTokens::kNone), std::vector<int32_t>{*id});
}

// Writes `contents` as a tokenizer.json in a fresh temporary directory.
fs::path write_temp(const std::string& name, const std::string& contents) {
  const fs::path dir = fs::temp_directory_path() / ("gptq_tok_test_" + name);
  fs::create_directories(dir);
  const fs::path path = dir / "tokenizer.json";
  std::ofstream(path, std::ios::binary) << contents;
  return path;
}

void expect_error(const fs::path& path, gptq::ErrorKind kind, const std::string& needle) {
  try {
    Tokenizer::load(path);
    FAIL() << "expected an error loading " << path;
  } catch (const gptq::Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, HostileFilesFailCleanly) {
  const std::string good = read_file(tokenizer_fixture("gpt2") / "tokenizer.json");
  ASSERT_FALSE(good.empty());
  expect_error(fs::path("/nonexistent/dir/tokenizer.json"), gptq::ErrorKind::kIo, "/nonexistent/dir");
  expect_error(write_temp("empty", ""), gptq::ErrorKind::kFormat, "not valid JSON");
  expect_error(write_temp("truncated", good.substr(0, good.size() / 2)), gptq::ErrorKind::kFormat, "not valid JSON");
  expect_error(write_temp("array", "[1, 2]"), gptq::ErrorKind::kFormat, "top level");

  json spec = json::parse(good);
  const auto with = [&](const std::string& name, auto edit) {
    json copy = spec;
    edit(copy);
    return write_temp(name, copy.dump());
  };
  expect_error(with("unigram", [](json& j) { j["model"]["type"] = "Unigram"; }), gptq::ErrorKind::kUnsupported,
               "unsupported model type \"Unigram\"");
  expect_error(with("no_model", [](json& j) { j.erase("model"); }), gptq::ErrorKind::kFormat, "\"model\"");
  expect_error(with("normalizer", [](json& j) { j["normalizer"] = {{"type", "NFKD"}}; }),
               gptq::ErrorKind::kUnsupported, "unsupported normalizer type \"NFKD\"");
  expect_error(with("pre", [](json& j) { j["pre_tokenizer"] = {{"type", "Punctuation"}}; }),
               gptq::ErrorKind::kUnsupported, "pre_tokenizer");
  expect_error(with("post", [](json& j) { j["post_processor"] = {{"type", "BertProcessing"}}; }),
               gptq::ErrorKind::kUnsupported, "BertProcessing");
  expect_error(with("vocab_type", [](json& j) { j["model"]["vocab"] = json::array(); }), gptq::ErrorKind::kFormat,
               "vocab");
  expect_error(with("bad_id", [](json& j) { j["model"]["vocab"]["Ġthe"] = -5; }), gptq::ErrorKind::kFormat,
               "Ġthe");
  expect_error(with("bad_merge", [](json& j) { j["model"]["merges"].push_back(json::array({"nope", "gone"})); }),
               gptq::ErrorKind::kFormat, "not in the vocab");
  expect_error(with("bad_regex", [](json& j) {
                 j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}},
                                       {"behavior", "Isolated"}, {"invert", false}};
               }),
               gptq::ErrorKind::kFormat, "does not compile");
  expect_error(with("added", [](json& j) { j["added_tokens"][0].erase("content"); }), gptq::ErrorKind::kFormat,
               "content");
}

TEST(Tokenizer, EmmaSpeed) {
  const Tokenizer tok = stories();
  GPTQ_REQUIRE_SHARED(gptq::test::shared_dir() / "data" / "austen");
  const std::string text = read_file(gptq::test::shared_dir() / "data" / "austen" / "emma.txt");
  ASSERT_GT(text.size(), 800'000u);
  const auto start = std::chrono::steady_clock::now();
  const auto ids = tok.encode(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << "emma.txt: " << text.size() << " bytes -> " << ids.size() << " tokens in " << seconds << " s\n";
  EXPECT_GT(ids.size(), 150'000u);
  EXPECT_EQ(tok.decode(ids), text);

  // The byte-level path: regex pre-tokenization and many short words.
  const Tokenizer llama3 = Tokenizer::load(tokenizer_fixture("llama3") / "tokenizer.json");
  const auto start3 = std::chrono::steady_clock::now();
  const auto ids3 = llama3.encode(text, SpecialTokens::kNone);
  const double seconds3 = std::chrono::duration<double>(std::chrono::steady_clock::now() - start3).count();
  std::cout << "emma.txt with the llama3 fixture: " << ids3.size() << " tokens in " << seconds3 << " s\n";
  EXPECT_EQ(llama3.decode(ids3), text);
}

}  // namespace
