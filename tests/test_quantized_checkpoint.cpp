// Loading GPTQ checkpoints: quantization_config parsing and dynamic rules, and hostile
// quantized checkpoints (each a clear error naming the problem).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/checkpoint.h"
#include "io/json_file.h"
#include "io/safetensors_writer.h"
#include "model/gptq_loader.h"
#include "model/model.h"
#include "format/packing.h"
#include "quant/pipeline.h"
#include "format/quant_config.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using test::expect_error;

TEST(QuantizeConfig, DynamicRulesFirstMatchAnchoredAtStart) {
  quant::QuantizeConfig c;
  c.dynamic = quant::parse_dynamic(
      R"({"-:.*lm_head": {}, "+:model\\.layers\\.[01]\\.": {"bits": 8}, "model\\.layers\\.1\\.mlp": {"bits": 2}, "mlp": {"bits": 3}})");
  ASSERT_EQ(c.dynamic.size(), 4u);
  EXPECT_FALSE(c.resolve("lm_head").has_value());
  EXPECT_EQ(c.resolve("model.layers.0.self_attn.q_proj")->bits, 8);
  EXPECT_EQ(c.resolve("model.layers.1.mlp.up_proj")->bits, 8);  // an earlier rule wins
  EXPECT_EQ(c.resolve("model.layers.2.mlp.up_proj")->bits, 4);  // "mlp" must match at the start
  EXPECT_EQ(c.resolve("model.layers.2.self_attn.o_proj")->group_size, 128);
}

TEST(QuantizeConfig, JsonRoundTripKeepsEveryField) {
  quant::QuantizeConfig c;
  c.defaults = {.bits = 3, .group_size = 64, .sym = false, .desc_act = true};
  c.static_groups = true;
  c.true_sequential = false;
  c.damp_percent = 0.1;
  c.damp_auto_increment = 0.02;
  c.mse = true;
  c.lm_head = true;
  c.format = quant::Format::kV2;
  c.dynamic = quant::parse_dynamic(R"({"-:x": {}, "y": {"group_size": 32}})");
  const auto j = c.to_json("9.9");
  EXPECT_EQ(j["meta"]["quantizer"], "gptq.cpp:9.9");
  EXPECT_EQ(j["checkpoint_format"], "gptq_v2");
  const auto back = quant::QuantizeConfig::from_json(j, "test");
  EXPECT_EQ(back.to_json("9.9"), j);
  EXPECT_EQ(back.quantizers, std::vector<std::string>{"gptq.cpp:9.9"});
}

// GPTQModel keeps the settings that do not take part in inference under "meta" only
// (tests/fixtures/gptqmodel: GPTQModel 7.6.0's layout, GAR on, non-default damping).
TEST(QuantizeConfig, ReadsGptqModelMetaFields) {
  const auto qc = quant::QuantizeConfig::from_json(
      io::read_ordered_json_file(test::fixtures_dir() / "gptqmodel" / "quantize_config.json"), "gptqmodel");
  EXPECT_EQ(qc.defaults.bits, 2);
  EXPECT_EQ(qc.defaults.group_size, 16);
  EXPECT_FALSE(qc.defaults.sym);
  EXPECT_EQ(qc.format, quant::Format::kV1);
  EXPECT_TRUE(qc.act_group_aware);  // only meta.act_group_aware says so
  EXPECT_EQ(qc.damp_percent, 0.025);
  EXPECT_EQ(qc.damp_auto_increment, 0.0025);
  EXPECT_FALSE(qc.static_groups);
  EXPECT_TRUE(qc.true_sequential);
  EXPECT_FALSE(qc.mse);
  EXPECT_EQ(qc.quantizers, std::vector<std::string>{"gptqmodel:7.6.0"});
  // The top level, where AutoGPTQ and gptq.cpp write them, wins over meta.
  const auto both = quant::QuantizeConfig::from_json(
      ordered_json::parse(R"({"bits": 4, "act_group_aware": false, "damp_percent": 0.1,
                              "meta": {"act_group_aware": true, "damp_percent": 0.2, "mse": 2.4,
                                       "quantizer": ["optimum:2.3.0", "gptqmodel:7.6.0"]}})"),
      "both");
  EXPECT_FALSE(both.act_group_aware);
  EXPECT_EQ(both.damp_percent, 0.1);
  EXPECT_TRUE(both.mse);
  EXPECT_EQ(both.quantizers, (std::vector<std::string>{"optimum:2.3.0", "gptqmodel:7.6.0"}));
  expect_error([] { quant::QuantizeConfig::from_json(ordered_json::parse(R"({"bits": 4, "meta": {"damp_percent": "x"}})"), "m"); },
               "m meta");
}

TEST(QuantizeConfig, MalformedConfigsAreNamed) {
  auto parse = [](const char* text) { return quant::QuantizeConfig::from_json(ordered_json::parse(text), "cfg"); };
  expect_error([&] { parse(R"({"quant_method": "gptq", "bits": 5})"); }, "bits 5 is not one of 2, 3, 4, 8");
  expect_error([&] { parse(R"({"quant_method": "gptq", "bits": "four"})"); }, "\"bits\" has the wrong type");
  expect_error([&] { parse(R"({"quant_method": "awq", "bits": 4})"); }, "quant_method \"awq\"");
  expect_error([&] { parse(R"({"bits": 4, "checkpoint_format": "marlin"})"); }, "checkpoint_format \"marlin\"");
  expect_error([&] { parse(R"({"bits": 4, "damp_percent": 2})"); }, "damp_percent");
  expect_error([&] { parse(R"({"bits": 4, "dynamic": {"(": {"bits": 8}}})"); }, "dynamic rule \"(\"");
  expect_error([&] { parse(R"({"bits": 4, "dynamic": {"x": {"colour": 8}}})"); }, "dynamic override \"colour\"");
  expect_error([&] { parse(R"([1, 2])"); }, "not an object");
}

// A small GPTQ checkpoint (RTN, no calibration needed) of the tiny random Llama fixture,
// copied tensor by tensor with one change to make it hostile.
class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    quant::PipelineOptions o;
    o.config.method = quant::Method::kRtn;
    o.config.defaults = {.bits = 4, .group_size = 16, .sym = false, .desc_act = false};
    o.out_dir = dir_.path() / "good";
    auto be = backend::make_cpu_backend();
    quant::quantize_model(test::fixtures_dir() / "arch" / "llama-bias-untied", {}, *be, o);
  }

  // Writes dir/bad: the good checkpoint with `edit` applied to its tensors and `config`
  // (config.json's quantization_config) edited by `edit_config`.
  fs::path corrupt(const std::function<void(std::map<std::string, std::vector<std::byte>>&,
                                            std::map<std::string, std::vector<int64_t>>&)>& edit,
                   const std::function<void(ordered_json&)>& edit_config = nullptr) {
    const fs::path good = dir_.path() / "good", bad = dir_.path() / "bad";
    fs::remove_all(bad);
    fs::create_directories(bad);
    io::Checkpoint ck(good);
    std::map<std::string, std::vector<std::byte>> data;
    std::map<std::string, std::vector<int64_t>> shapes;
    std::map<std::string, DType> dtypes;
    for (const auto& name : ck.names()) {
      const auto& t = ck.get(name);
      data[name].assign(t.data.begin(), t.data.end());
      shapes[name] = t.shape;
      dtypes[name] = t.dtype;
    }
    edit(data, shapes);
    std::vector<io::SafetensorsTensor> out;
    for (const auto& [name, bytes] : data) out.push_back({name, dtypes[name], shapes[name], bytes});
    io::write_safetensors(bad / "model.safetensors", out);
    std::ifstream in(good / "config.json");
    ordered_json config = ordered_json::parse(in);
    if (edit_config) edit_config(config["quantization_config"]);
    std::ofstream(bad / "config.json") << config.dump(1);
    return bad;
  }

  void expect_load_error(const fs::path& dir, const std::string& fragment) {
    auto be = backend::make_cpu_backend();
    expect_error([&] { model::Model::load(dir, *be); }, fragment);
  }

  test::TempDir dir_;
  const std::string q_ = "model.layers.1.self_attn.q_proj";
};

TEST_F(Hostile, TheUntouchedCopyLoads) {
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(corrupt([](auto&, auto&) {}), *be);
  EXPECT_EQ(m.layers()[1].linear(model::Slot::kQ).describe(), "gptq 4-bit g16");
}

TEST_F(Hostile, QweightShapeNotMatchingBits) {
  // One packed row short: [5, 48] instead of [48*4/32, 48] = [6, 48].
  const fs::path bad = corrupt([&](auto& data, auto& shapes) {
    shapes[q_ + ".qweight"] = {5, 48};
    data[q_ + ".qweight"].resize(5 * 48 * 4);
  });
  expect_load_error(bad, "qweight has shape [5, 48], expected [6, 48]");
}

TEST_F(Hostile, GidxOutOfRange) {
  const fs::path bad = corrupt([&](auto& data, auto&) {
    int32_t g = 7;  // 48 / 16 = 3 groups
    std::memcpy(data[q_ + ".g_idx"].data() + 4 * 5, &g, 4);
  });
  expect_load_error(bad, "g_idx");
}

TEST_F(Hostile, MissingScales) {
  const fs::path bad = corrupt([&](auto& data, auto& shapes) {
    data.erase(q_ + ".scales");
    shapes.erase(q_ + ".scales");
  });
  expect_load_error(bad, "missing tensor \"" + q_ + ".scales\"");
}

TEST_F(Hostile, WrongDtypeForQweight) {
  const fs::path bad = corrupt([&](auto&, auto&) {}, nullptr);
  // Rewrite qweight as F32 of the same byte size.
  io::Checkpoint ck(bad);
  std::vector<io::SafetensorsTensor> out;
  std::vector<std::vector<std::byte>> keep;
  for (const auto& name : ck.names()) {
    const auto& t = ck.get(name);
    keep.emplace_back(t.data.begin(), t.data.end());
    out.push_back({name, name == q_ + ".qweight" ? DType::kF32 : t.dtype, t.shape, keep.back()});
  }
  io::write_safetensors(dir_.path() / "bad2.safetensors", out);
  fs::rename(dir_.path() / "bad2.safetensors", bad / "model.safetensors");
  expect_load_error(bad, "has dtype F32, expected I32");
}

TEST_F(Hostile, ConfigBitsDisagreeWithTensors) {
  const fs::path bad = corrupt([](auto&, auto&) {}, [](ordered_json& qc) { qc["bits"] = 8; });
  expect_load_error(bad, "expected [12, 48]");
}

TEST_F(Hostile, MalformedQuantizationConfig) {
  expect_load_error(corrupt([](auto&, auto&) {}, [](ordered_json& qc) { qc = "gptq"; }),
                    "config.json quantization_config: expected a JSON object");
  expect_load_error(corrupt([](auto&, auto&) {}, [](ordered_json& qc) { qc.erase("bits"); }),
                    "missing field \"bits\"");
}

TEST(QuantizeCheck, InFeaturesMustFitThePacking) {
  quant::QuantizeConfig c;
  // A group size that does not divide K (288 = 2·128 + 32) is a partial last group.
  c.defaults.group_size = 128;
  EXPECT_NO_THROW(quant::check_quantizable(test::stories15m_dir(), c));
  c.defaults = {.bits = 3, .group_size = -1};
  // llama-bias-untied has in_features 48: not a multiple of the 32 values 3-bit words hold.
  expect_error([&] { quant::check_quantizable(test::fixtures_dir() / "arch" / "llama-bias-untied", c); },
               "multiple of 32, which 3-bit packing needs");
}

}  // namespace
}  // namespace gptq

namespace gptq {
namespace {

// v1 stores zero − 1; other readers cannot decode a stored zero of 0 (AutoGPTQ reads 2^bits,
// GPTQModel's v1 -> v2 conversion carries into the next column), so asymmetric v1 output
// must never contain one. 2-bit asymmetric RTN of stories15M has groups where it would.
TEST(V1Zeros, AsymmetricV1CheckpointsHaveNoZeroPointZero) {
  test::TempDir dir;
  for (const auto format : {quant::Format::kV1, quant::Format::kV2}) {
    quant::PipelineOptions o;
    o.config.method = quant::Method::kRtn;
    o.config.defaults = {.bits = 2, .group_size = 32, .sym = false, .desc_act = false};
    o.config.format = format;
    o.out_dir = dir.path() / (format == quant::Format::kV1 ? "v1" : "v2");
    auto be = backend::make_cpu_backend();
    quant::quantize_model(test::stories15m_dir(), {}, *be, o);
    const auto qc = *quant::read_quantize_config(o.out_dir);
    io::Checkpoint ck(o.out_dir);
    int64_t zero_zeros = 0;
    for (int64_t layer = 0; layer < 6; ++layer) {
      for (model::Slot s : model::kAllSlots) {
        const auto [out, in] = model::slot_shape(model::load_config(o.out_dir), s);
        const auto name = model::module_name(layer, s);
        const auto q = quant::unpack(model::read_packed(ck, name, out, in, *qc.resolve(name), qc.format, false),
                                     quant::Format::kV2);
        for (int32_t z : q.zeros) zero_zeros += z == 0;
      }
    }
    if (format == quant::Format::kV1) {
      EXPECT_EQ(zero_zeros, 0);
    } else {
      EXPECT_GT(zero_zeros, 0) << "the case this test guards no longer arises; pick another";
    }
  }
}

}  // namespace
}  // namespace gptq

namespace gptq {
namespace {

TEST(Sharding, ShardedCheckpointLoadsToTheSameModel) {
  test::TempDir dir;
  auto be = backend::make_cpu_backend();
  for (const uint64_t shard : {uint64_t{0}, uint64_t{5'000'000}}) {
    quant::PipelineOptions o;
    o.config.method = quant::Method::kRtn;
    o.config.defaults = {.bits = 4, .group_size = 32};
    o.out_dir = dir.path() / (shard ? "sharded" : "single");
    o.writer.max_shard_bytes = shard;
    const auto r = quant::quantize_model(test::stories15m_dir(), {}, *be, o);
    EXPECT_EQ(r.checkpoint.shards.size(), shard ? 2u : 1u);  // the 18 MB embedding alone fills one
  }
  EXPECT_TRUE(fs::exists(dir.path() / "sharded" / "model.safetensors.index.json"));
  const std::vector<int32_t> ids = {1, 9038, 2501, 263, 931};
  std::vector<float> a, b;
  auto m1 = model::Model::load(dir.path() / "single", *be);
  auto m2 = model::Model::load(dir.path() / "sharded", *be);
  auto c1 = m1.new_cache(8), c2 = m2.new_cache(8);
  m1.forward(ids, c1, model::Logits::kAll, a);
  m2.forward(ids, c2, model::Logits::kAll, b);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace gptq
