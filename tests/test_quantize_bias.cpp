// Modules with a bias (Qwen2's q/k/v): after GPTQ quantizes a module, the pipeline swaps
// the quantized module into the layer it calibrates the later groups on. That module
// must be what a reload of the checkpoint runs, bias included: here the o_proj of layer
// 0 is quantized again, independently, on the o_proj inputs the *saved* checkpoint's
// q/k/v produce, and must come out code for code as the pipeline wrote it.
#include <gtest/gtest.h>

#include "backend/backend.h"
#include "backend/registry.h"
#include "core/splitmix.h"
#include "format/packing.h"
#include "model/config.h"
#include "model/gptq_loader.h"
#include "model/layer.h"
#include "quant/gptq.h"
#include "quant/pipeline.h"
#include "temp_dir.h"
#include "test_paths.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using model::Slot;

// The Hessian of one slot's input, accumulated as the pipeline's observer does.
class Capture final : public model::LinearObserver {
 public:
  Capture(backend::QuantOps& ops, Slot slot, int64_t k) : ops_(ops), slot_(slot), h_(ops.hessian(k)) {}
  void observe(int64_t, Slot s, backend::Tensor x) override {
    if (s == slot_) ops_.accumulate(*h_, x);
  }
  const backend::Hessian& hessian() const { return *h_; }

 private:
  backend::QuantOps& ops_;
  Slot slot_;
  std::unique_ptr<backend::Hessian> h_;
};

TEST(QuantizeBias, LaterGroupsCalibrateOnTheQuantizedModulesWithTheirBiases) {
  const fs::path src = test::fixtures_dir() / "arch" / "qwen2-bias";
  const model::ModelConfig c = model::load_config(src);
  // 4 samples of 32 random token ids: one forward chunk in the pipeline and here.
  quant::CalibSet calib{.seq_len = 32};
  SplitMix64 rng{7};
  for (int s = 0; s < 4; ++s) {
    auto& ids = calib.samples.emplace_back();
    for (int t = 0; t < 32; ++t) ids.push_back(int32_t(rng.next() % uint64_t(c.vocab)));
  }
  test::TempDir tmp;
  quant::PipelineOptions po{.out_dir = tmp.path() / "q"};
  po.config.defaults = {.bits = 4, .group_size = 32, .sym = true, .desc_act = false};
  po.config.act_group_aware = false;
  auto be = backend::make_cpu_backend();
  quant::quantize_model(src, calib, *be, po);

  // Layer 0 as the checkpoint has it (q/k/v quantized, with their biases), run to the
  // o_proj input over the calibration samples.
  const io::Checkpoint source(src), saved(tmp.path() / "q");
  model::GptqLoader loader(*be, po.config);
  const model::DecoderLayer L = model::load_layer(saved, c, 0, loader, *be);
  const int64_t T = 4 * 32, kv = c.kv_heads * c.head_dim;
  model::LayerRunner runner(*be, c, T);
  std::vector<float> hidden(std::size_t(T * c.hidden));
  std::vector<int32_t> positions;
  const io::TensorView& emb = source.get("model.embed_tokens.weight");
  io::TensorView row = emb;
  row.shape = {c.hidden};
  const std::size_t row_bytes = std::size_t(c.hidden) * dtype_size(emb.dtype);
  for (std::size_t s = 0; s < calib.samples.size(); ++s) {
    for (std::size_t t = 0; t < calib.samples[s].size(); ++t) {
      row.data = emb.data.subspan(std::size_t(calib.samples[s][t]) * row_bytes, row_bytes);
      io::to_f32(row, &hidden[(s * 32 + t) * std::size_t(c.hidden)]);
      positions.push_back(int32_t(t));
    }
  }
  const backend::Buffer h = be->alloc(T, c.hidden), pos = be->alloc(1, T, DType::kI32);
  const backend::KvLayer cache{be->alloc(T, kv), be->alloc(T, kv)};
  be->upload(hidden, h.view());
  be->upload(positions, pos.view());
  std::vector<model::Sequence> seqs;
  for (int64_t s = 0; s < 4; ++s) {
    seqs.push_back({.first_row = s * 32, .rows = 32,
                    .cache = {cache.k.view().row_slice(s * 32, 32), cache.v.view().row_slice(s * 32, 32)}});
  }
  const auto ops = backend::make_quant_ops(*be);
  const auto [N, K] = model::slot_shape(c, Slot::kO);
  Capture capture(*ops, Slot::kO, K);
  runner.forward(L, h.view(), pos.view(), seqs, &capture, Slot::kO);

  const std::string name = "model.layers.0.self_attn.o_proj";
  const std::vector<float> W = io::to_f32(source.get(name + ".weight"), {N, K}, src.string());
  quant::GptqOptions go{.quant = {.bits = 4, .sym = true}, .group_size = 32, .module_name = name};
  const quant::QuantizedLinear expected = quant::gptq_quantize(*ops, W.data(), N, K, capture.hessian(), go, nullptr);
  const quant::QuantizedLinear written =
      quant::unpack(model::read_packed(saved, name, N, K, *po.config.resolve(name), po.config.format, false),
                    quant::Format::kV2);
  ASSERT_EQ(written.q.size(), expected.q.size());
  int64_t codes_differing = 0;
  for (std::size_t i = 0; i < written.q.size(); ++i) codes_differing += written.q[i] != expected.q[i];
  EXPECT_EQ(codes_differing, 0) << "of " << written.q.size() << " codes";
  EXPECT_TRUE(written.scales == expected.scales);
}

}  // namespace
}  // namespace gptq
