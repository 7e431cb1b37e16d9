// Resuming an interrupted quantization (quant/layer_journal.h): a run stopped after
// layer k and continued writes the same checkpoint, byte for byte, as an uninterrupted
// run; a continued run with other settings is refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>

#include "backend/backend.h"
#include "core/cpu_threads.h"
#include "quant/calibration.h"
#include "quant/pipeline.h"
#include "stories_calibration.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted by the test") {}
};

class Resume : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    calib_ = new quant::CalibSet(test::stories_calibration(8, 128));
  }
  static void TearDownTestSuite() { delete calib_; }

  // stories15M at 4-bit g32 with act-order (the column order depends on each layer's
  // Hessian, so a wrong replayed input shows in the codes). Stops after `stop_after`
  // layers when >= 0, as a kill would.
  quant::QuantizeResult run(const fs::path& out, quant::LayerJournal::Mode mode, int64_t stop_after = -1,
                            int bits = 4) {
    quant::PipelineOptions po{.out_dir = out, .journal_dir = tmp_.path() / "journal", .journal_mode = mode};
    po.config.defaults = {.bits = bits, .group_size = 32, .sym = true, .desc_act = true};
    po.config.act_group_aware = false;
    po.on_layer = [stop_after](int64_t done, int64_t, double) {
      if (done == stop_after) throw Interrupted();
    };
    auto be = backend::make_cpu_backend();
    return quant::quantize_model(test::stories15m_dir(), *calib_, *be, po);
  }

  test::TempDir tmp_;
  static quant::CalibSet* calib_;
};
quant::CalibSet* Resume::calib_ = nullptr;

TEST_F(Resume, ContinuedRunWritesTheSameCheckpoint) {
  run(tmp_.path() / "whole", quant::LayerJournal::Mode::kFresh);
  EXPECT_FALSE(fs::exists(tmp_.path() / "journal")) << "the journal goes once the output is committed";

  EXPECT_THROW(run(tmp_.path() / "resumed", quant::LayerJournal::Mode::kFresh, 3), Interrupted);
  EXPECT_FALSE(fs::exists(tmp_.path() / "resumed")) << "no partial output";
  EXPECT_TRUE(fs::exists(tmp_.path() / "journal" / "layer-00002" / "layer.json"));
  EXPECT_FALSE(fs::exists(tmp_.path() / "journal" / "layer-00003"));

  const quant::QuantizeResult r = run(tmp_.path() / "resumed", quant::LayerJournal::Mode::kContinue);
  for (const char* f : {"model.safetensors", "config.json", "quantize_config.json"}) {
    const std::string a = test::read_file(tmp_.path() / "resumed" / f), b = test::read_file(tmp_.path() / "whole" / f);
    const auto diff = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
    EXPECT_TRUE(a == b) << f << ": " << a.size() << " vs " << b.size() << " bytes, first difference at byte "
                        << (diff.first - a.begin());
  }
  EXPECT_EQ(r.modules.size(), 6u * 7u);
  // Phase times: layers 0-2 replayed (the next layer's inputs, one pass), 3-5
  // quantized (q/k/v, o, gate/up, down, then the next layer's inputs); the phases are
  // parts of the layer's time (other() ≥ 0 up to the clock's rounding).
  ASSERT_EQ(r.layers.size(), 6u);
  for (const quant::LayerTimes& t : r.layers) {
    const bool replayed = t.layer < 3;
    EXPECT_EQ(t.replayed, replayed) << "layer " << t.layer;
    EXPECT_EQ(t.passes, replayed ? 1 : 5) << "layer " << t.layer;
    EXPECT_GT(t.forward, 0.0) << "layer " << t.layer;
    EXPECT_EQ(t.factor > 0.0, !replayed) << "layer " << t.layer;
    EXPECT_GE(t.other(), -1e-6) << quant::describe(t);
  }
}

// The CPU products are thread-count invariant (backend/cpu/fixed_blas.h), so the count
// the load fit picks cannot change a checkpoint: a whole run on one thread, a run
// stopped after two layers on more threads than there are cores, and its continuation at
// the load-fitted count all write the same bytes.
TEST_F(Resume, TheThreadCountDoesNotChangeTheCheckpoint) {
  set_thread_policy({.mode = ThreadMode::kFixed, .count = 1});
  run(tmp_.path() / "one", quant::LayerJournal::Mode::kFresh);
  set_thread_policy({.mode = ThreadMode::kFixed, .count = usable_cores() + 1});
  EXPECT_THROW(run(tmp_.path() / "resumed", quant::LayerJournal::Mode::kFresh, 2), Interrupted);
  set_thread_policy({.mode = ThreadMode::kAuto});
  run(tmp_.path() / "resumed", quant::LayerJournal::Mode::kContinue);
  EXPECT_TRUE(test::read_file(tmp_.path() / "resumed" / "model.safetensors") ==
              test::read_file(tmp_.path() / "one" / "model.safetensors"));
}

TEST_F(Resume, OtherSettingsAreRefused) {
  EXPECT_THROW(run(tmp_.path() / "out", quant::LayerJournal::Mode::kFresh, 1), Interrupted);
  test::expect_error([&] { run(tmp_.path() / "out", quant::LayerJournal::Mode::kContinue, -1, 3); },
                     "had another quantization_config", ErrorKind::kInvalidArgument);
}

TEST_F(Resume, NothingToContinue) {
  test::expect_error([&] { run(tmp_.path() / "out", quant::LayerJournal::Mode::kContinue); },
                     "holds no interrupted run", ErrorKind::kInvalidArgument);
}

}  // namespace
}  // namespace gptq
