// Which loaders take which checkpoints (format/loader_support.h) and the format written by
// default (quant::default_format): the rules read from GPTQModel 7.6, transformers 5.17 +
// optimum 2.3 and vLLM's sources, one case per rule and its boundary.
#include <gtest/gtest.h>

#include "format/loader_support.h"
#include "format/quant_config.h"

namespace gptq {
namespace {

using quant::Format;
using quant::Loader;
using quant::QuantizeConfig;

quant::LoaderVerdict verdict(const QuantizeConfig& c, Loader l) {
  for (const auto& v : quant::loader_support(c)) {
    if (v.loader == l) return v;
  }
  ADD_FAILURE() << "no verdict for " << quant::to_string(l);
  return {};
}

QuantizeConfig config(int bits, int group, bool sym, Format format) {
  QuantizeConfig c;
  c.defaults = {.bits = bits, .group_size = group, .sym = sym};
  c.format = format;
  c.quantizers = {"gptq.cpp:0.1.0"};
  return c;
}

TEST(LoaderSupport, DefaultFormatIsV2AsSoonAsAnyModuleIsAsymmetric) {
  EXPECT_EQ(quant::default_format(config(4, 128, true, Format::kV1)), Format::kV1);
  EXPECT_EQ(quant::default_format(config(4, 128, false, Format::kV1)), Format::kV2);
  QuantizeConfig mixed = config(4, 128, true, Format::kV1);
  mixed.dynamic = quant::parse_dynamic(R"({"-:.*lm_head": {}, ".*down_proj": {"sym": false}})");
  EXPECT_EQ(quant::default_format(mixed), Format::kV2);
  mixed.dynamic = quant::parse_dynamic(R"({".*down_proj": {"bits": 8}})");
  EXPECT_EQ(quant::default_format(mixed), Format::kV1);
}

TEST(LoaderSupport, EveryLoaderIsJudgedInOrder) {
  const auto all = quant::loader_support(config(4, 128, true, Format::kV1));
  ASSERT_EQ(all.size(), 4u);
  const Loader order[] = {Loader::kGptqCpp, Loader::kGptqModel, Loader::kTransformers, Loader::kVllm};
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].loader, order[i]);
    EXPECT_TRUE(all[i].loads) << quant::to_string(all[i].loader) << ": " << all[i].why;
  }
}

// GPTQModel's loader guard: sym=False + format gptq needs meta.quantizer gptqmodel >= 0.9.0.
TEST(LoaderSupport, GptqModelRefusesAsymmetricV1FromOtherTools) {
  EXPECT_FALSE(verdict(config(4, 128, false, Format::kV1), Loader::kGptqModel).loads);
  EXPECT_TRUE(verdict(config(4, 128, false, Format::kV2), Loader::kGptqModel).loads);
  EXPECT_TRUE(verdict(config(4, 128, true, Format::kV1), Loader::kGptqModel).loads);
  QuantizeConfig theirs = config(2, 16, false, Format::kV1);
  for (const auto& [quantizers, loads] : std::vector<std::pair<std::vector<std::string>, bool>>{
           {{"gptqmodel:7.6.0"}, true},
           {{"GPTQModel:0.9.0"}, true},
           {{"optimum:2.3.0", "gptqmodel:1.0.0.dev1"}, true},
           {{"gptqmodel:0.8.9"}, false},
           {{"gptqmodel"}, false},
           {{}, false}}) {
    theirs.quantizers = quantizers;
    EXPECT_EQ(verdict(theirs, Loader::kGptqModel).loads, loads) << ::testing::PrintToString(quantizers);
  }
  // The guard reads the top-level sym only.
  QuantizeConfig rule = config(4, 128, true, Format::kV1);
  rule.dynamic = quant::parse_dynamic(R"({".*down_proj": {"sym": false}})");
  EXPECT_TRUE(verdict(rule, Loader::kGptqModel).loads);
}

TEST(LoaderSupport, TransformersCannotLoadAQuantizedLmHead) {
  QuantizeConfig c = config(4, 128, true, Format::kV1);
  c.lm_head = true;
  const auto hf = verdict(c, Loader::kTransformers);
  EXPECT_FALSE(hf.loads);
  EXPECT_NE(hf.why.find("cannot load a quantized lm_head"), std::string::npos) << hf.why;
  EXPECT_NE(hf.why.find("GPTQModel and gptq.cpp load it"), std::string::npos) << hf.why;
  EXPECT_TRUE(verdict(c, Loader::kGptqModel).loads);
  EXPECT_TRUE(verdict(c, Loader::kGptqCpp).loads);
  EXPECT_TRUE(verdict(config(3, 32, false, Format::kV2), Loader::kTransformers).loads);
}

// vLLM since PR #38288: Marlin only, (4|8)-bit symmetric, group -1/32/64/128.
TEST(LoaderSupport, VllmTakesFourAndEightBitSymmetricWithMarlinGroups) {
  for (int bits : {4, 8}) {
    for (int group : {-1, 32, 64, 128}) {
      for (Format f : {Format::kV1, Format::kV2}) {
        EXPECT_TRUE(verdict(config(bits, group, true, f), Loader::kVllm).loads) << bits << " " << group;
      }
    }
  }
  for (int bits : {2, 3}) EXPECT_FALSE(verdict(config(bits, 128, true, Format::kV1), Loader::kVllm).loads) << bits;
  EXPECT_FALSE(verdict(config(4, 128, false, Format::kV2), Loader::kVllm).loads);
  const auto g16 = verdict(config(4, 16, true, Format::kV1), Loader::kVllm);
  EXPECT_FALSE(g16.loads);
  EXPECT_NE(g16.why.find("not 16"), std::string::npos) << g16.why;
  QuantizeConfig rule = config(4, 128, true, Format::kV1);
  rule.dynamic = quant::parse_dynamic(R"({".*down_proj": {"bits": 3}})");
  EXPECT_FALSE(verdict(rule, Loader::kVllm).loads);
  rule.dynamic = quant::parse_dynamic(R"({"-:.*down_proj": {}})");
  EXPECT_TRUE(verdict(rule, Loader::kVllm).loads);
}

}  // namespace
}  // namespace gptq
