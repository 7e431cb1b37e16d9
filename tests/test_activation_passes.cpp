// Where the calibration activations live between passes and which passes run
// (quant/device_budget.h, quant/pipeline.h): the placement the budget picks, and that
// keeping the activations on the device or streaming them, and keeping the residual
// after attention or recomputing attention, all give the same checkpoint byte for byte
// (the same operations on the same inputs), on the CPU backend, where every path runs.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "quant/calibration.h"
#include "quant/device_budget.h"
#include "quant/pipeline.h"
#include "stories_calibration.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using quant::StoreHome;

// A layer needing 100 fixed bytes, 10 per chunk row and 4 per token and store; 1000
// tokens in samples of at most 100, a 400-row chunk wanted: positions 4000 bytes, one
// store 4000 bytes.
constexpr quant::DeviceBudget kNeed{.weights = 100, .reserve = 0, .per_row = 10, .per_token = 4};
constexpr quant::ActivationNeeds kCalib{.tokens = 1000, .longest = 100, .wanted_rows = 400, .keep_residual = true};

TEST(PlanActivations, BothStoresOnTheDeviceWhenTheyFitWithTheWantedChunk) {
  const quant::ActivationPlan p = quant::plan_activations(kNeed, 100 + 4000 + 2 * 4000 + 400 * 10, kCalib);
  EXPECT_EQ(p.activations, StoreHome::kDevice);
  EXPECT_EQ(p.residual, StoreHome::kDevice);
  EXPECT_EQ(p.chunk_rows, 400);
  EXPECT_EQ(p.bytes, 16100u);
}

TEST(PlanActivations, TheResidualGoesToTheHostBeforeTheChunkShrinks) {
  // One byte short of both stores with 400 rows (the wanted chunk is below 2048 rows).
  const quant::ActivationPlan p = quant::plan_activations(kNeed, 16099, kCalib);
  EXPECT_EQ(p.activations, StoreHome::kDevice);
  EXPECT_EQ(p.residual, StoreHome::kHost);
  EXPECT_EQ(p.chunk_rows, 400);
  EXPECT_EQ(p.bytes, 100u + 4000 + 4000 + 400 * (10 + 4));  // a streamed store's second slot: 4 per row
}

TEST(PlanActivations, BothOnTheHostAndTheChunkShrunkToOneSample) {
  // 10 bytes a row and 4 for the streamed stores' second staging slot.
  const quant::ActivationPlan p = quant::plan_activations(kNeed, 100 + 4000 + 100 * 14, kCalib);
  EXPECT_EQ(p.activations, StoreHome::kHost);
  EXPECT_EQ(p.residual, StoreHome::kHost);
  EXPECT_EQ(p.chunk_rows, 100);
  test::expect_error([] { quant::plan_activations(kNeed, 100 + 4000 + 100 * 14 - 1, kCalib); },
                     "quantizing needs at least 5500 bytes", ErrorKind::kDevice);
}

TEST(PlanActivations, NoResidualStoreWithoutReuseAndNoDeviceStoreWhenStreamingIsAsked) {
  quant::ActivationNeeds a = kCalib;
  a.keep_residual = false;
  EXPECT_EQ(quant::plan_activations(kNeed, 1 << 30, a).residual, StoreHome::kNone);
  a.device_stores = false;
  const quant::ActivationPlan p = quant::plan_activations(kNeed, 1 << 30, a);
  EXPECT_EQ(p.activations, StoreHome::kHost);
  EXPECT_EQ(p.chunk_rows, 400);
}

class Passes : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    calib_ = new quant::CalibSet(test::stories_calibration(7, 96));
  }
  static void TearDownTestSuite() { delete calib_; }

  // model.safetensors of stories15M at 4-bit g32 (act-order when asked) with the
  // given placement, in chunks of 3 samples (two full chunks and a partial one).
  std::string quantize(const std::string& name, quant::ActivationHome home, quant::AttentionReuse reuse,
                       bool desc_act, const std::string& dynamic = "") {
    quant::PipelineOptions po{.out_dir = tmp_.path() / name, .batch_samples = 3, .activations = home,
                              .attention_reuse = reuse};
    po.config.defaults = {.bits = 4, .group_size = 32, .sym = true, .desc_act = desc_act};
    po.config.act_group_aware = !desc_act;
    if (!dynamic.empty()) po.config.dynamic = quant::parse_dynamic(dynamic);
    auto be = backend::make_cpu_backend();
    const quant::QuantizeResult r = quant::quantize_model(test::stories15m_dir(), *calib_, *be, po);
    if (dynamic.empty()) {
      for (const auto& t : r.layers) EXPECT_EQ(t.passes, 5) << quant::describe(t);  // 4 groups + the next inputs
    }
    return test::read_file(po.out_dir / "model.safetensors");
  }

  void expect_same_everywhere(bool desc_act, const std::string& dynamic = "") {
    using H = quant::ActivationHome;
    using R = quant::AttentionReuse;
    const std::string reference = quantize("recompute-host", H::kHost, R::kRecompute, desc_act, dynamic);
    ASSERT_GT(reference.size(), 1000u);
    EXPECT_TRUE(quantize("reuse-resident", H::kAuto, R::kAuto, desc_act, dynamic) == reference);
    EXPECT_TRUE(quantize("reuse-host", H::kHost, R::kAuto, desc_act, dynamic) == reference);
    EXPECT_TRUE(quantize("recompute-resident", H::kAuto, R::kRecompute, desc_act, dynamic) == reference);
  }

  test::TempDir tmp_;
  static quant::CalibSet* calib_;
};
quant::CalibSet* Passes::calib_ = nullptr;

TEST_F(Passes, PlacementAndAttentionReuseGiveTheSameCheckpoint) { expect_same_everywhere(false); }

TEST_F(Passes, SameWithActOrder) { expect_same_everywhere(true); }

// Modules left out change which pass first reaches the MLP block (layer 1: the down pass
// keeps the residual; layer 2: the gate/up pass, no down pass; layer 3: no o_proj pass).
TEST_F(Passes, SameWithModulesLeftOut) {
  expect_same_everywhere(false, R"({"-:.*layers\\.1\\.mlp\\.(gate|up)_proj": {}, "-:.*layers\\.2\\.mlp\\.down_proj": {},
                                    "-:.*layers\\.3\\.self_attn\\.o_proj": {}})");
}

}  // namespace
}  // namespace gptq
