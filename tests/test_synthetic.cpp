// The synthetic models' tokenizer (model/synthetic.h): every added token carries the
// fields the tokenizers library requires (transformers and GPTQModel load the synthetic
// checkpoints through it: a missing "single_word" made it refuse the file), and our own
// tokenizer reads it as bytes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/synthetic.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

TEST(Synthetic, TokenizerHasEveryFieldTheTokenizersLibraryRequires) {
  const nlohmann::json t = nlohmann::json::parse(model::synthetic_tokenizer_json(1000));
  ASSERT_EQ(t.at("added_tokens").size(), 3u);
  for (const auto& a : t.at("added_tokens")) {
    for (const char* f : {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}) {
      EXPECT_TRUE(a.contains(f)) << a.dump() << " lacks " << f;
    }
  }
  EXPECT_EQ(t.at("model").at("vocab").size(), 1000u);
}

TEST(Synthetic, TokenizerEncodesBytes) {
  const auto tk = tok::Tokenizer::from_json(nlohmann::json::parse(model::synthetic_tokenizer_json(1000)), "synthetic");
  // "Hi": bytes 0x48 0x69 → ids 3 + byte (no merges, no BOS post-processor).
  EXPECT_EQ(tk.encode("Hi", tok::SpecialTokens::kAdd), (std::vector<int32_t>{3 + 0x48, 3 + 0x69}));
  EXPECT_EQ(tk.vocab_size(), 1000);
}

}  // namespace
}  // namespace gptq
