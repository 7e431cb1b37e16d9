#include "model/bnb_loader.h"

#include "core/error.h"
#include "format/bnb_packed.h"
#include "format/quant_config.h"
#include "model/bnb_checkpoint.h"

namespace gptq::model {

BnbLoader::BnbLoader(backend::Backend& b, quant::bnb::BnbConfig config) : backend_(b), config_(config) {
  quant::bnb::validate(config_);
  if (!config_.enabled()) throw Error(ErrorKind::kInvalidArgument, "BnbLoader: no bitsandbytes type given");
}

std::unique_ptr<backend::Linear> BnbLoader::load(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out,
                                                 int64_t in, bool has_bias) {
  if (prefix == "lm_head") {
    DenseLoader dense(backend_);
    return dense.load(ckpt, prefix, out, in, has_bias);
  }
  const std::string file = ckpt.dir().string();
  const io::TensorView& w = ckpt.get(prefix + ".weight");
  std::vector<float> wf = io::to_f32(w, {out, in}, file);
  quant::bnb::BnbPacked p = quant::bnb::quantize(wf, out, in, config_);
  if (has_bias) p.bias = load_vector(ckpt, prefix + ".bias", out);
  stats_.layers += 1;
  stats_.weights += out * in;
  stats_.dense_bytes += w.data.size() + p.bias.size() * 4;
  stats_.quantized_bytes += p.bytes();
  return backend_.bnb_linear(std::move(p));
}

Model load_bnb(const std::filesystem::path& dir, backend::Backend& b, const quant::bnb::BnbConfig& config,
               BnbLoadStats* stats) {
  if (read_bnb_checkpoint_config(dir)) {
    throw Error(ErrorKind::kInvalidArgument, dir.string() + ": already quantized (bitsandbytes); load it without "
                                                            "--load-in-4bit / --load-in-8bit");
  }
  if (quant::read_quantize_config(dir)) {
    throw Error(ErrorKind::kInvalidArgument, dir.string() + ": already quantized (GPTQ); bitsandbytes load-time "
                                                            "quantization needs a dense checkpoint");
  }
  BnbLoader loader(b, config);
  Model m = Model::load(dir, b, loader);
  if (stats != nullptr) *stats = loader.stats();
  return m;
}

}  // namespace gptq::model
