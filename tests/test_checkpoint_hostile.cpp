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
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

using test::expect_error;

std::string safetensors_bytes(const std::string& header, const std::string& data, int64_t claimed_len = -1) {
  const uint64_t n = claimed_len >= 0 ? uint64_t(claimed_len) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + data;
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
  expect_error([&] { io::SafetensorsFile f(dir.write("t.safetensors", "abc")); }, "truncated", ErrorKind::kFormat);
}

TEST(Safetensors, HeaderLengthPastTheEnd) {
  test::TempDir dir;
  const auto p = dir.write("h.safetensors", safetensors_bytes("{}", "", 1000));
  expect_error([&] { io::SafetensorsFile f(p); }, "runs past the end", ErrorKind::kFormat);
  const auto q = dir.write("huge.safetensors", safetensors_bytes("{}", "", int64_t(1) << 62));
  expect_error([&] { io::SafetensorsFile f(q); }, "exceeds the limit", ErrorKind::kFormat);
}

TEST(Safetensors, MalformedJson) {
  test::TempDir dir;
  const auto p = dir.write("j.safetensors", safetensors_bytes(R"({"a": {"dtype": )", ""));
  expect_error([&] { io::SafetensorsFile f(p); }, "malformed JSON", ErrorKind::kFormat);
}

TEST(Safetensors, OffsetsOutOfRange) {
  test::TempDir dir;
  const auto p = dir.write("o.safetensors",
                           safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, "outside the data section", ErrorKind::kFormat);
  const auto q = dir.write("r.safetensors",
                           safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(q); }, "begin > end", ErrorKind::kFormat);
}

TEST(Safetensors, OverlappingTensors) {
  test::TempDir dir;
  const auto p = dir.write(
      "ov.safetensors",
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                        std::string(12, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, "overlapping", ErrorKind::kFormat);
}

TEST(Safetensors, DtypeShapeMismatch) {
  test::TempDir dir;
  const auto p = dir.write("m.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, "F16 [3] = 6 bytes", ErrorKind::kFormat);
  const auto q = dir.write("d.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})", std::string(1, '\0')));
  expect_error([&] { io::SafetensorsFile f(q); }, "unknown dtype \"F8_E9\"", ErrorKind::kFormat);
  const auto r = dir.write("s.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,1]}})", std::string(1, '\0')));
  expect_error([&] { io::SafetensorsFile f(r); }, "overflows", ErrorKind::kFormat);
}

TEST(Safetensors, NegativeAndNonIntegerShape) {
  test::TempDir dir;
  const auto p = dir.write("n.safetensors",
                           safetensors_bytes(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  expect_error([&] { io::SafetensorsFile f(p); }, "not a non-negative integer", ErrorKind::kFormat);
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
  expect_error([&] { ckpt.get("c"); }, "missing tensor \"c\"", ErrorKind::kFormat);
}

TEST(Checkpoint, IndexNamingAMissingTensorOrEscapingShard) {
  test::TempDir dir;
  dir.write("s1.safetensors", safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')));
  dir.write("model.safetensors.index.json", R"({"weight_map":{"zz":"s1.safetensors"}})");
  expect_error([&] { io::Checkpoint c(dir.path()); }, "\"zz\" is listed in s1.safetensors but not found", ErrorKind::kFormat);
  dir.write("model.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  expect_error([&] { io::Checkpoint c(dir.path()); }, "not a plain file name", ErrorKind::kFormat);
}

TEST(Checkpoint, NoWeights) {
  test::TempDir dir;
  expect_error([&] { io::Checkpoint c(dir.path()); }, "no model.safetensors", ErrorKind::kIo);
}

TEST(Config, UnknownArchitecture) {
  test::TempDir dir;
  dir.write("config.json", R"({"architectures":["GPTNeoXForCausalLM"],"hidden_size":8})");
  expect_error([&] { model::load_config(dir.path()); }, "GPTNeoXForCausalLM", ErrorKind::kUnsupported);
}

TEST(Config, MalformedAndIncomplete) {
  test::TempDir dir;
  dir.write("config.json", R"({"architectures":["LlamaForCausalLM"], "hidden_size": )");
  expect_error([&] { model::load_config(dir.path()); }, "malformed JSON", ErrorKind::kFormat);
  dir.write("config.json", R"({"architectures":["LlamaForCausalLM"],"hidden_size":64})");
  expect_error([&] { model::load_config(dir.path()); }, "missing field \"intermediate_size\"", ErrorKind::kFormat);
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":"x","num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10})");
  expect_error([&] { model::load_config(dir.path()); }, "\"intermediate_size\" has the wrong type", ErrorKind::kFormat);
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10})");
  expect_error([&] { model::load_config(dir.path()); }, "not a multiple of num_key_value_heads", ErrorKind::kFormat);
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"rope_type":"yarn","factor":4}})");
  expect_error([&] { model::load_config(dir.path()); }, "rope type \"yarn\"", ErrorKind::kUnsupported);
}

TEST(Model, WrongTensorShapeIsNamed) {
  test::TempDir dir;
  // A one-layer config whose embedding tensor has the wrong shape.
  dir.write("config.json",
            R"({"architectures":["LlamaForCausalLM"],"hidden_size":4,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":3,"tie_word_embeddings":true})");
  dir.write("model.safetensors", safetensors_bytes(R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[4,3],"data_offsets":[0,48]}})",
                                                   std::string(48, '\0')));
  auto be = backend::make_cpu_backend();
  expect_error([&] { model::Model::load(dir.path(), *be); }, "\"model.embed_tokens.weight\" has shape [4, 3], expected [3, 4]", ErrorKind::kFormat);
}

TEST(Tokenizer, MissingFile) {
  test::TempDir dir;
  expect_error([&] { tok::Tokenizer::load(dir.path() / "tokenizer.json"); }, "tokenizer.json", ErrorKind::kIo);
}

}  // namespace
}  // namespace gptq
