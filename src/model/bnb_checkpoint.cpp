#include "model/bnb_checkpoint.h"

#include <cmath>
#include <cstring>
#include <set>

#include "core/error.h"
#include "format/bnb_codebook.h"
#include "format/bnb_serialized.h"
#include "io/json_file.h"
#include "model/config.h"
#include "model/side_files.h"

namespace gptq::model {

namespace fs = std::filesystem;
namespace bnb = quant::bnb;

namespace {

[[noreturn]] void bad(const io::Checkpoint& ckpt, const std::string& msg) {
  throw Error(ErrorKind::kFormat, ckpt.dir().string() + ": " + msg);
}

std::string shape_of(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

// The tensor `name`, required to have this dtype and shape.
const io::TensorView& tensor(const io::Checkpoint& ckpt, const std::string& name, DType dtype,
                             const std::vector<int64_t>& shape) {
  const io::TensorView* t = ckpt.find(name);
  if (t == nullptr) bad(ckpt, "missing tensor \"" + name + "\"");
  if (t->dtype != dtype) {
    bad(ckpt, "tensor \"" + name + "\" has dtype " + std::string(dtype_name(t->dtype)) + ", expected " +
                  std::string(dtype_name(dtype)));
  }
  if (t->shape != shape) bad(ckpt, "tensor \"" + name + "\" has shape " + t->shape_string() + ", expected " + shape_of(shape));
  return *t;
}

// fp32 values, each finite and >= 0 (absmax and scales are magnitudes).
std::vector<float> magnitudes(const io::Checkpoint& ckpt, const io::TensorView& t) {
  std::vector<float> v(std::size_t(t.numel()));
  std::memcpy(v.data(), t.data.data(), v.size() * 4);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (!std::isfinite(v[i]) || v[i] < 0.0f) {
      bad(ckpt, "tensor \"" + t.name + "\" element " + std::to_string(i) + " is " + std::to_string(v[i]) +
                    ", expected a finite value >= 0");
    }
  }
  return v;
}

// The stored 4-bit code book must hold the values the kernels hard-wire (bitsandbytes'
// own kernels ignore it too: they decode with the constants).
void expect_book(const io::Checkpoint& ckpt, const io::TensorView& t, std::span<const float> book) {
  for (std::size_t i = 0; i < book.size(); ++i) {
    float v;
    std::memcpy(&v, t.data.data() + i * 4, 4);
    if (v != book[i]) {  // by value: bitsandbytes' FP4 table has +0 at code 8, ours -0
      bad(ckpt, "tensor \"" + t.name + "\" entry " + std::to_string(i) + " is " + std::to_string(v) +
                    ", not bitsandbytes' " + std::to_string(book[i]) + " (a custom code book is not supported)");
    }
  }
}

bnb::BnbPacked read_4bit(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                         const bnb::BnbConfig& config) {
  const std::string w = prefix + ".weight";
  std::string state_name;
  for (const char* t : {"nf4", "fp4"}) {
    const std::string name = w + "." + bnb::kQuantStatePrefix + t;
    if (ckpt.find(name) == nullptr) continue;
    if (!state_name.empty()) bad(ckpt, "module \"" + prefix + "\" has both an nf4 and an fp4 quant_state");
    state_name = name;
  }
  if (state_name.empty()) bad(ckpt, "missing tensor \"" + w + "." + bnb::kQuantStatePrefix + "nf4\" (or fp4)");
  const io::TensorView& state = *ckpt.find(state_name);
  if (state.dtype != DType::kU8 || state.shape.size() != 1) {
    bad(ckpt, "tensor \"" + state_name + "\" has dtype " + std::string(dtype_name(state.dtype)) + " and shape " +
                  state.shape_string() + ", expected U8 [length]");
  }
  const bnb::QuantStateInfo q = bnb::parse_quant_state(state.data, ckpt.dir().string() + ": \"" + state_name + "\"");
  if (state_name.substr(state_name.size() - 3) != bnb::type_name(q.type)) {
    bad(ckpt, "tensor \"" + state_name + "\" says quant_type " + bnb::type_name(q.type));
  }
  if (q.type != config.type) {
    bad(ckpt, "module \"" + prefix + "\" is " + bnb::type_name(q.type) + " but quantization_config says " +
                  bnb::type_name(config.type));
  }
  if (q.out != out || q.in != in) {
    bad(ckpt, "module \"" + prefix + "\": quant_state shape " + shape_of({q.out, q.in}) + ", expected " + shape_of({out, in}));
  }
  bnb::BnbPacked p{.type = q.type, .out_features = out, .in_features = in, .blocksize = q.blocksize};
  const int64_t blocks = p.blocks();
  const io::TensorView& codes = tensor(ckpt, w, DType::kU8, {(p.numel() + 1) / 2, 1});
  p.data.assign(reinterpret_cast<const uint8_t*>(codes.data.data()),
                reinterpret_cast<const uint8_t*>(codes.data.data()) + codes.data.size());
  expect_book(ckpt, tensor(ckpt, w + ".quant_map", DType::kF32, {16}), q.type == bnb::BnbType::kNf4 ? bnb::kNf4 : bnb::kFp4);
  if (q.nested) {
    const int64_t groups = (blocks + bnb::kNestedBlock - 1) / bnb::kNestedBlock;
    const io::TensorView& c = tensor(ckpt, w + ".absmax", DType::kU8, {blocks});
    bnb::NestedAbsmax n{.codes = std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(c.data.data()),
                                                      reinterpret_cast<const uint8_t*>(c.data.data()) + c.data.size()),
                        .scales = magnitudes(ckpt, tensor(ckpt, w + ".nested_absmax", DType::kF32, {groups})),
                        .offset = q.nested_offset};
    // Taken as stored (NestedAbsmax::map says why); any finite values in [-1, 1] decode.
    const io::TensorView& m = tensor(ckpt, w + ".nested_quant_map", DType::kF32, {256});
    std::memcpy(n.map.data(), m.data.data(), 256 * 4);
    for (std::size_t i = 0; i < n.map.size(); ++i) {
      if (!(std::fabs(n.map[i]) <= 1.0f)) {
        bad(ckpt, "tensor \"" + m.name + "\" entry " + std::to_string(i) + " is " + std::to_string(n.map[i]) +
                      ", expected a value in [-1, 1]");
      }
    }
    p.nested = std::move(n);
  } else {
    for (const char* t : {".nested_absmax", ".nested_quant_map"}) {
      if (ckpt.find(w + t) != nullptr) bad(ckpt, "tensor \"" + w + t + "\" present but the quant_state is not nested");
    }
    p.absmax = magnitudes(ckpt, tensor(ckpt, w + ".absmax", DType::kF32, {blocks}));
  }
  return p;
}

bnb::BnbPacked read_int8(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                         const bnb::BnbConfig& config) {
  const io::TensorView& cb = tensor(ckpt, prefix + ".weight", DType::kI8, {out, in});
  if (const io::TensorView* f = ckpt.find(prefix + ".weight_format")) {
    // bitsandbytes maps 0 to "row"; it has refused the tiled layouts (1..3) since 0.45.
    const bool row = f->dtype == DType::kU8 && f->numel() == 1 && uint8_t(f->data[0]) == 0;
    if (!row) bad(ckpt, "tensor \"" + f->name + "\": expected a U8 scalar 0 (row-major weights)");
  }
  bnb::BnbPacked p{.type = bnb::BnbType::kInt8, .out_features = out, .in_features = in, .threshold = config.int8_threshold};
  p.data.assign(reinterpret_cast<const uint8_t*>(cb.data.data()), reinterpret_cast<const uint8_t*>(cb.data.data()) + cb.data.size());
  p.absmax = magnitudes(ckpt, tensor(ckpt, prefix + ".SCB", DType::kF32, {out}));
  return p;
}

}  // namespace

std::optional<bnb::BnbConfig> read_bnb_checkpoint_config(const fs::path& dir) {
  const fs::path config = dir / "config.json";
  if (!fs::is_directory(dir) || !fs::exists(config)) return std::nullopt;
  const nlohmann::ordered_json j = io::read_ordered_json_file(config);
  if (!j.is_object() || !j.contains("quantization_config") || j["quantization_config"].is_null()) return std::nullopt;
  return bnb::bnb_config_from_json(j["quantization_config"], config.string() + " quantization_config");
}

bnb::BnbPacked read_bnb_linear(const io::Checkpoint& ckpt, const std::string& prefix, int64_t out, int64_t in,
                               bool has_bias, const bnb::BnbConfig& config) {
  bnb::BnbPacked p = config.type == bnb::BnbType::kInt8 ? read_int8(ckpt, prefix, out, in, config)
                                                        : read_4bit(ckpt, prefix, out, in, config);
  if (has_bias || ckpt.find(prefix + ".bias") != nullptr) p.bias = load_vector(ckpt, prefix + ".bias", out);
  try {
    bnb::validate(p);
  } catch (const Error& e) {
    bad(ckpt, "module \"" + prefix + "\": " + e.what());
  }
  return p;
}

std::unique_ptr<backend::Linear> BnbCheckpointLoader::load(const io::Checkpoint& ckpt, const std::string& prefix,
                                                           int64_t out, int64_t in, bool has_bias) {
  const io::TensorView* w = ckpt.find(prefix + ".weight");
  const bool quantized = w != nullptr && (w->dtype == DType::kU8 || w->dtype == DType::kI8);
  if (!quantized) {
    DenseLoader dense(backend_);
    return dense.load(ckpt, prefix, out, in, has_bias);
  }
  return backend_.bnb_linear(read_bnb_linear(ckpt, prefix, out, in, has_bias, config_));
}

io::CheckpointSummary write_bnb_checkpoint(const fs::path& src, const fs::path& out, const bnb::BnbConfig& config,
                                           const io::CheckpointWriterOptions& writer, BnbLoadStats* stats) {
  bnb::validate(config);
  if (!config.enabled()) throw Error(ErrorKind::kInvalidArgument, "write_bnb_checkpoint: no bitsandbytes type given");
  nlohmann::ordered_json model_config = source_config_json(src);
  if (model_config.contains("quantization_config") && !model_config["quantization_config"].is_null()) {
    throw Error(ErrorKind::kInvalidArgument, src.string() + ": already quantized; bitsandbytes quantization needs a dense model");
  }
  const ModelConfig c = load_config(src);
  const io::Checkpoint ckpt(src);
  const std::string file = ckpt.dir().string();
  io::CheckpointWriter w(out, writer);
  BnbLoadStats s;
  std::set<std::string> done;
  auto add = [&](const std::string& name, DType dtype, const std::vector<int64_t>& shape, std::span<const std::byte> data) {
    w.add_tensor(name, dtype, shape, data);
    done.insert(name);
  };
  auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
  for (int64_t l = 0; l < c.layers; ++l) {
    for (Slot slot : kAllSlots) {
      const std::string p = module_name(l, slot);
      const auto [n, k] = slot_shape(c, slot);
      const io::TensorView& t = io::expect_shape(ckpt.get(p + ".weight"), {n, k}, file);
      const bnb::BnbPacked q = bnb::quantize(io::to_f32(t, {n, k}, file), n, k, config);
      s.layers += 1;
      s.weights += n * k;
      s.dense_bytes += t.data.size();
      s.quantized_bytes += q.bytes();
      const std::string wn = p + ".weight";
      if (q.type == bnb::BnbType::kInt8) {
        add(wn, DType::kI8, {n, k}, bytes(q.data));
        add(p + ".SCB", DType::kF32, {n}, bytes(q.absmax));
        const uint8_t row = 0;
        add(p + ".weight_format", DType::kU8, {}, std::as_bytes(std::span(&row, 1)));
        continue;
      }
      add(wn, DType::kU8, {int64_t(q.data.size()), 1}, bytes(q.data));
      add(wn + ".quant_map", DType::kF32, {16}, bytes(q.type == bnb::BnbType::kNf4 ? bnb::kNf4 : bnb::kFp4));
      if (q.nested) {
        add(wn + ".absmax", DType::kU8, {int64_t(q.nested->codes.size())}, bytes(q.nested->codes));
        add(wn + ".nested_absmax", DType::kF32, {int64_t(q.nested->scales.size())}, bytes(q.nested->scales));
        add(wn + ".nested_quant_map", DType::kF32, {256}, bytes(q.nested->map));
      } else {
        add(wn + ".absmax", DType::kF32, {int64_t(q.absmax.size())}, bytes(q.absmax));
      }
      const std::string js = bnb::quant_state_json(q, t.dtype);
      add(wn + "." + bnb::kQuantStatePrefix + bnb::type_name(q.type), DType::kU8, {int64_t(js.size())},
          std::as_bytes(std::span(js)));
    }
  }
  // Everything else (embedding, norms, biases, an untied head) as stored.
  for (const std::string& name : ckpt.names()) {
    if (done.contains(name)) continue;
    const io::TensorView& t = ckpt.get(name);
    w.add_tensor(name, t.dtype, t.shape, t.data);
  }
  model_config["quantization_config"] = bnb::quantization_config_json(config);
  w.add_file("config.json", model_config.dump(2) + "\n");
  add_side_files(w, src);
  if (stats != nullptr) *stats = s;
  return w.commit();
}

}  // namespace gptq::model
