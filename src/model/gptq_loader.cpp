#include "model/gptq_loader.h"

#include <cstring>

#include "core/error.h"

namespace gptq::model {

namespace {

[[noreturn]] void bad(const io::Checkpoint& ckpt, const std::string& msg) {
  throw Error(ErrorKind::kFormat, ckpt.dir().string() + ": " + msg);
}

const io::TensorView& get_2d(const io::Checkpoint& ckpt, const std::string& name, std::array<int64_t, 2>& shape) {
  const io::TensorView* t = ckpt.find(name);
  if (t == nullptr) bad(ckpt, "missing tensor \"" + name + "\"");
  if (t->shape.size() != 2) bad(ckpt, "tensor \"" + name + "\" has shape " + t->shape_string() + ", expected 2 dimensions");
  shape = {t->shape[0], t->shape[1]};
  return *t;
}

std::vector<int32_t> read_i32(const io::Checkpoint& ckpt, const io::TensorView& t) {
  if (t.dtype != DType::kI32) {
    bad(ckpt, "tensor \"" + t.name + "\" has dtype " + std::string(dtype_name(t.dtype)) + ", expected I32");
  }
  std::vector<int32_t> v(std::size_t(t.numel()));
  std::memcpy(v.data(), t.data.data(), v.size() * 4);
  return v;
}

}  // namespace

quant::PackedLinear read_packed(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                                const quant::ModuleSettings& s, quant::Format format, bool has_bias) {
  quant::PackedLinear p;
  p.bits = s.bits;
  p.group_size = s.group_size;
  p.in_features = in;
  p.out_features = out;
  p.qweight = read_i32(ckpt, get_2d(ckpt, prefix + ".qweight", p.qweight_shape));
  p.qzeros = read_i32(ckpt, get_2d(ckpt, prefix + ".qzeros", p.qzeros_shape));
  const io::TensorView& scales = get_2d(ckpt, prefix + ".scales", p.scales_shape);
  p.scales.resize(std::size_t(scales.numel()));
  if (scales.dtype == DType::kF16) {
    std::memcpy(p.scales.data(), scales.data.data(), p.scales.size() * 2);
  } else if (scales.dtype == DType::kF32 || scales.dtype == DType::kBF16) {
    std::vector<float> f(p.scales.size());
    io::to_f32(scales, f.data());
    for (std::size_t i = 0; i < f.size(); ++i) p.scales[i] = f32_to_f16(f[i]);
  } else {
    bad(ckpt, "tensor \"" + scales.name + "\" has dtype " + std::string(dtype_name(scales.dtype)) + ", expected F16");
  }
  if (const io::TensorView* g = ckpt.find(prefix + ".g_idx")) {
    if (g->shape != std::vector<int64_t>{in}) {
      bad(ckpt, "tensor \"" + g->name + "\" has shape " + g->shape_string() + ", expected [" + std::to_string(in) + "]");
    }
    p.g_idx = read_i32(ckpt, *g);
  } else {
    // Checkpoints without act-order may omit g_idx: groups are then k / group_size.
    p.g_idx.resize(std::size_t(in));
    for (int64_t k = 0; k < in; ++k) p.g_idx[std::size_t(k)] = int32_t(s.group_size <= 0 ? 0 : k / s.group_size);
  }
  if (has_bias || ckpt.find(prefix + ".bias") != nullptr) p.bias = load_vector(ckpt, prefix + ".bias", out);
  try {
    if (format == quant::Format::kV1) {
      quant::convert_v1_zeros_to_v2(p);
    } else {
      quant::validate(p);
    }
  } catch (const Error& e) {
    bad(ckpt, "module \"" + prefix + "\": " + e.what());
  }
  return p;
}

std::unique_ptr<backend::Linear> GptqLoader::load(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out,
                                                  int64_t in, bool has_bias) {
  if (ckpt.find(prefix + ".qweight") == nullptr) {
    // Not quantized: a dynamic "-:" rule, lm_head=false, or a partial checkpoint.
    DenseLoader dense(backend_);
    return dense.load(ckpt, prefix, out, in, has_bias);
  }
  const auto settings = config_.resolve(prefix);
  if (!settings) bad(ckpt, "module \"" + prefix + "\" is quantized, but a dynamic \"-:\" rule excludes it");
  return backend_.gptq_linear(read_packed(ckpt, prefix, out, in, *settings, config_.format, has_bias));
}

}  // namespace gptq::model
