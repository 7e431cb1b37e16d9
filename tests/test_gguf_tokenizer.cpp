// The tokenizer a SentencePiece (`tokenizer.ggml.model = llama`) GGUF describes, against the
// one transformers builds from it: tests/fixtures/sentencepiece (scripts/make_sentencepiece_gguf.py)
// holds stories15M's Llama-2 vocabulary written by gguf-py as llama.cpp's converter writes it
// (pieces, scores, types; no merges, no tensors) and AutoTokenizer.from_pretrained(gguf_file=)'s
// ids and decodings. Hand-built files check the merge ranking and the errors.
#include <gtest/gtest.h>

#include <fstream>
#include <limits>

#include "gguf_builder.h"
#include "io/gguf.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/gguf_tokenizer.h"
#include "tokenizer/sentencepiece_merges.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using Merges = std::vector<std::pair<std::string, std::string>>;

fs::path fixture() { return test::fixtures_dir() / "sentencepiece" / "stories15M-tokenizer.gguf"; }

std::vector<json> cases() {
  std::ifstream in(test::fixtures_dir() / "sentencepiece" / "tokenizer_cases.jsonl");
  EXPECT_TRUE(in.good()) << "missing reference: run scripts/make_sentencepiece_gguf.py";
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

TEST(SentencePieceGguf, IdsAndDecodingMatchTransformers) {
  const auto tk = tok::Tokenizer::load_for_model(fixture());
  const std::vector<json> all = cases();
  EXPECT_GE(all.size(), 450u);
  for (const json& c : all) {
    const auto ids = tk.encode(c["text"].get<std::string>());
    EXPECT_EQ(ids, c["ids"].get<std::vector<int32_t>>()) << c["text"];
    EXPECT_EQ(tk.decode(ids), c["decoded"].get<std::string>()) << c["text"];
  }
}

// Where transformers' ids from the GGUF differ from stories15M's own tokenizer.json (the
// sentencepiece library's ids), the cause is transformers' Metaspace: it prepends "▁" only to
// the text's first part and only if it does not start with one already, where tokenizer.json's
// Prepend normalizer (like sentencepiece's add_dummy_prefix) always adds it. So every such text
// starts with a space or "▁", or holds a special token with text after it.
TEST(SentencePieceGguf, DiffersFromTokenizerJsonOnlyAtThePrefixSpace) {
  int differ = 0;
  for (const json& c : cases()) {
    if (c["ids"] == c["tokenizer_json_ids"]) continue;
    ++differ;
    const std::string t = c["text"].get<std::string>();
    const bool leading = t.starts_with(" ") || t.starts_with("\u2581");
    const bool special = t.find("<s>") != std::string::npos || t.find("</s>") != std::string::npos ||
                         t.find("<unk>") != std::string::npos;
    EXPECT_TRUE(leading || special) << t;
  }
  EXPECT_GT(differ, 0);  // the fixture covers the difference
}

TEST(SentencePieceGguf, TokenizerFiles) {
  const io::GgufFile f(fixture());
  const auto t = tok::gguf_tokenizer_json(f);
  EXPECT_EQ(t["model"]["byte_fallback"], true);
  EXPECT_EQ(t["model"]["merges"].size(), 61249u);  // as many as stories15M's tokenizer.json has
  EXPECT_EQ(t["pre_tokenizer"]["prepend_scheme"], "first");
  EXPECT_EQ(t["post_processor"]["single"][0]["SpecialToken"]["id"], "<s>");
  // The `tokenizers` library (so transformers) refuses a TemplateProcessing without one.
  EXPECT_EQ(t["post_processor"]["pair"].size(), 4u);  // <s> A <s>:1 B:1
  EXPECT_EQ(t["added_tokens"].size(), 3u);  // <unk> (named by unknown_token_id), <s>, </s> (control)
  const auto c = tok::gguf_tokenizer_config_json(f);
  EXPECT_EQ(c["tokenizer_class"], "LlamaTokenizer");
  EXPECT_EQ(c["add_bos_token"], true);
  EXPECT_EQ(c["bos_token"], "<s>");
  EXPECT_EQ(c["eos_token"], "</s>");
  EXPECT_EQ(c["unk_token"], "<unk>");
  EXPECT_EQ(c["model_max_length"], 256);
}

// Expected lists from transformers' generate_merges on the same input.
TEST(SentencePieceMerges, RankedByScoreThenLengthsThenIds) {
  auto merges = [](std::vector<std::string> tokens, std::vector<double> scores) {
    return tok::merges_from_scores(tokens, scores);
  };
  EXPECT_EQ(merges({"a", "b", "c", "ab", "bc", "abc", "ca"}, {0, 0, 0, -1, -2, -1, -3}),
            (Merges{{"ab", "c"}, {"a", "bc"}, {"a", "b"}, {"b", "c"}, {"c", "a"}}));
  // A piece listed twice: its last id and score, at its first position.
  EXPECT_EQ(merges({"a", "b", "c", "ab", "bc", "abc", "ca", "ab"}, {0, 0, 0, -1, -2, -1, -3, -5}),
            (Merges{{"ab", "c"}, {"a", "bc"}, {"b", "c"}, {"c", "a"}, {"a", "b"}}));
  // Lengths count code points: "é" is one, so (a, é) ties with (b, c) and keeps its place.
  EXPECT_EQ(merges({"a", "é", "bc", "b", "c", "aé", "abc", "ab"}, {0, 0, -1, 0, 0, -1, -1, -2}),
            (Merges{{"ab", "c"}, {"a", "bc"}, {"b", "c"}, {"a", "é"}, {"a", "b"}}));
}

// A six-piece SentencePiece file, edited one key at a time.
struct SmallVocab {
  std::vector<std::string> tokens{"<unk>", "<s>", "</s>", "\u2581", "a", "\u2581a"};
  std::vector<float> scores{0, 0, 0, -2, -1, -1};
  std::vector<int32_t> types{2, 3, 3, 1, 1, 1};
  std::string pre = "default";
  bool with_scores = true;

  std::string bytes() const {
    test::Builder g;
    g.header(3, 0, with_scores ? 8 : 7)
        .kv_str("general.architecture", "llama")
        .kv_str("tokenizer.ggml.model", "llama")
        .kv_str("tokenizer.ggml.pre", pre)
        .kv_strings("tokenizer.ggml.tokens", tokens)
        .kv_i32s("tokenizer.ggml.token_type", types)
        .kv_u32("tokenizer.ggml.bos_token_id", 1)
        .kv_u32("tokenizer.ggml.eos_token_id", 2);
    if (with_scores) g.kv_f32s("tokenizer.ggml.scores", scores);
    return g.pad().b;
  }
};

TEST(SentencePieceGguf, SmallVocabulary) {
  test::TempDir tmp;
  const auto tk = tok::Tokenizer::load_for_model(tmp.write("v.gguf", SmallVocab{}.bytes()));
  EXPECT_EQ(tk.encode("a a"), (std::vector<int32_t>{1, 5, 5}));  // BOS by default, "▁a▁a"
  EXPECT_EQ(tk.decode(tk.encode("a a")), "a a");
}

// One clear error naming the file and the key, never a crash (also under the sanitizer build).
TEST(SentencePieceGguf, HostileFiles) {
  test::TempDir tmp;
  auto expect = [&](const SmallVocab& v, const std::string& fragment, ErrorKind kind = ErrorKind::kFormat) {
    const fs::path p = tmp.write("h.gguf", v.bytes());
    test::expect_error([&] { tok::Tokenizer::load_for_model(p); }, p.string() + ": " + fragment, kind);
  };
  SmallVocab v;
  v.scores.pop_back();
  expect(v, "tokenizer.ggml.scores has 5 entries for 6 tokens");
  v = {};
  v.types.push_back(1);
  expect(v, "tokenizer.ggml.token_type has 7 entries for 6 tokens");
  v = {};
  v.types[4] = 9;
  expect(v, "tokenizer.ggml.token_type[4] = 9 is not a llama.cpp token type (0..6)");
  v = {};
  v.types[3] = -1;
  expect(v, "tokenizer.ggml.token_type[3] = -1 is not a llama.cpp token type");
  v = {};
  v.scores[5] = std::numeric_limits<float>::quiet_NaN();
  expect(v, "tokenizer.ggml.scores[5] is not finite");
  v = {};
  v.scores[3] = -std::numeric_limits<float>::infinity();
  expect(v, "tokenizer.ggml.scores[3] is not finite");
  v = {};
  v.with_scores = false;
  expect(v, "a SentencePiece vocabulary needs tokenizer.ggml.merges or tokenizer.ggml.scores");
  v = {};
  v.pre = "llama3";
  expect(v, "tokenizer.ggml.pre \"llama3\" is not supported with a SentencePiece vocabulary",
         ErrorKind::kUnsupported);
}

}  // namespace
}  // namespace gptq
