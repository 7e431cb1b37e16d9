// Hostile and broken checkpoints: each must give a gptq::Error naming the problem,
// never a crash (the sanitizer build runs these too).
#include <gtest/gtest.h>

#include <cstring>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "model/model.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

std::string safetensors_bytes(const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  const uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
}

// Expects a gptq::Error of `kind` whose message contains `fragment`.
template <class F>
void expect_error(F&& f, ErrorKind kind, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing \"" << fragment << "\"";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(Safetensors, ReadsAValidFile) {
  test::TempDir dir;
  const std::string data(4 * 6, '\0');
  const auto p = dir.write("ok.safetensors",
                           safetensors_bytes(R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})", data));
  io::SafetensorsFile f(p);
  ASSERT_NE(f.find("a"), nullptr);
  EXPECT_EQ(f.find("a")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(f.metadata().at("format"), "pt");
}

TEST(Safetensors, TruncatedFile) {
  test::TempDir dir;
  expect_error([&] { io::SafetensorsFile f(dir.write("t.safetensors", "abc")); }, ErrorKind::kFormat, "truncated");
}

TEST(Safetensors, HeaderLengthPastTheEnd) {
  test::TempDir dir;
  const auto p = dir.write("h.safetensors", safetensors_bytes("{}", "", 1000));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "runs past the end");
  const auto q = dir.write("huge.safetensors", safetensors_bytes("{}", "", int64_t(1) << 62));
  expect_error([&] { io::SafetensorsFile f(q); }, ErrorKind::kFormat, "exceeds the limit");
}

TEST(Safetensors, MalformedJson) {
  test::TempDir dir;
  const auto p = dir.write("j.safetensors", safetensors_bytes(R"({"a": {"dtype": )", ""));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "malformed JSON");
}

TEST(Safetensors, OffsetsOutOfRange) {
  test::TempDir dir;
  const auto p = dir.write("o.safetensors",
                           safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "outside the data section");
  const auto q = dir.write("r.safetensors",
                           safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(q); }, ErrorKind::kFormat, "begin > end");
}

TEST(Safetensors, OverlappingTensors) {
  test::TempDir dir;
  const auto p = dir.write(
      "ov.safetensors",
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        std::string(12, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "overlapping");
}

TEST(Safetensors, DtypeShapeMismatch) {
  test::TempDir dir;
  const auto p = dir.write("m.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "F16 [3] = 6 bytes");
  const auto q = dir.write("d.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0')));
  expect_error([&] { io::SafetensorsFile f(q); }, ErrorKind::kFormat, "unknown dtype \"F8_E9\"");
  const auto r = dir.write("s.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,1]}})", std::string(1, '\0')));
  expect_error([&] { io::SafetensorsFile f(r); }, ErrorKind::kFormat, "overflows");
}

TEST(Safetensors, NegativeAndNonIntegerShape) {
  test::TempDir dir;
  const auto p = dir.write("n.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, ErrorKind::kFormat, "not a non-negative integer");
}

TEST(Checkpoint, ShardedIndex) {
  test::TempDir dir;
  dir.write("s1.safetensors", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  dir.write("s2.safetensors", safetensors_bytes(R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')));
  dir.write("model.safetensors.index.json", R"({"metadata":{},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  io::Checkpoint ckpt(dir.path());
  EXPECT_EQ(ckpt.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(ckpt.shards().size(), 2u);
  EXPECT_EQ(ckpt.get("b").dtype, DType::kBF16);
  expect_error([&] { ckpt.get("c"); }, ErrorKind::kFormat, "missing tensor \"c\"");
}

TEST(Checkpoint, IndexNamingAMissingTensorOrEscapingShard) {
  test::TempDir dir;
  dir.write("s1.safetensors", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  dir.write("model.safetensors.index.json", R"({"weight_map":{"zz":"s1.safetensors"}})");
  expect_error([&] { io::Checkpoint c(dir.path()); }, ErrorKind::kFormat, "\"zz\" is listed in s1.safetensors but not found");
  dir.write("model.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  expect_error([&] { io::Checkpoint c(dir.path()); }, ErrorKind::kFormat, "not a plain file name");
}

TEST(Checkpoint, NoWeights) {
  test::TempDir dir;
  expect_error([&] { io::Checkpoint c(dir.path()); }, ErrorKind::kIo, "no model.safetensors");
}

TEST(Config, UnknownArchitecture) {
  test::TempDir dir;
  dir.write("config.json", R"({"architectures":["GPTNeoXForCausalLM"],"hidden_size":8})");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kUnsupported, "GPTNeoXForCausalLM");
}

TEST(Config, MalformedAndIncomplete) {
  test::TempDir dir;
  dir.write("config.json", R"({"architectures":["LlamaForCausalLM"], "hidden_size": )");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kFormat, "malformed JSON");
  dir.write("config.json", R"({"architectures":["LlamaForCausalLM"],"hidden_size":64})");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kFormat, "missing field \"intermediate_size\"");
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":"x","num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10})");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kFormat, "\"intermediate_size\" has the wrong type");
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10})");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kFormat, "not a multiple of num_key_value_heads");
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4}})");
  expect_error([&] { model::load_config(dir.path()); }, ErrorKind::kUnsupported, "rope type \"yarn\"");
}

TEST(Model, WrongTensorShapeIsNamed) {
  test::TempDir dir;
  // A one-layer config whose embedding tensor has the wrong shape.
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":3,"tie_word_embeddings":true})");
  dir.write("model.safetensors", safetensors_bytes(R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]}})",
                                                   std::string(48, '\0')));
  auto be = backend::make_cpu_backend();
  expect_error([&] { model::Model::load(dir.path(), *be); }, ErrorKind::kFormat,
               "\"model.embed_tokens.weight\" has shape [4, 3], expected [3, 4]");
}

TEST(Tokenizer, MissingFile) {
  test::TempDir dir;
  expect_error([&] { tok::Tokenizer::load(dir.path() / "tokenizer.json"); }, ErrorKind::kIo, "tokenizer.json");
}

}  // namespace
}  // namespace gptq
