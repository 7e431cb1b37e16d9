// gptq info MODEL [--json]
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "backend/registry.h"
#include "cli/commands.h"
#include "cli/device_options.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "io/checkpoint.h"
#include "format/bnb_packed.h"
#include "model/bnb_checkpoint.h"
#include "model/config.h"
#include "model/layer.h"
#include "format/loader_support.h"
#include "format/quant_config.h"

namespace gptq::cli {

namespace {
struct InfoArgs {
  std::string model;
  bool json = false;
  bool tensors = false;
  DeviceArgs device;
  LoadArgs load;
};
}  // namespace

Runner add_info(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  app.add_option("model", a->model, "Checkpoint directory (config.json + safetensors) or .gguf file")->required();
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  app.add_flag("--tensors", a->tensors, "List every tensor (always included in --json)");
  add_device_flags(app, a->device);
  add_load_flags(app, a->load);
  return [a] {
    const model::ModelConfig c = model::load_config(a->model);
    const io::Checkpoint ckpt(a->model);
    // A serialized bitsandbytes checkpoint: its decoder-layer linears whose weight is
    // stored as integers (model/bnb_checkpoint.h), by module name.
    const auto bnb_ckpt = model::read_bnb_checkpoint_config(a->model);
    std::set<std::string> bnb_modules;
    int64_t quant_weights = 0;
    if (bnb_ckpt) {
      for (int64_t l = 0; l < c.layers; ++l) {
        for (const model::Slot s : model::kAllSlots) {
          const std::string m = model::module_name(l, s);
          const io::TensorView* w = ckpt.find(m + ".weight");
          if (w == nullptr || (w->dtype != DType::kU8 && w->dtype != DType::kI8)) continue;
          bnb_modules.insert(m);
          const auto [out, in] = model::slot_shape(c, s);
          quant_weights += out * in;
        }
      }
    }
    auto bnb_tensor = [&](const std::string& name) {
      if (!bnb_ckpt) return false;
      for (const char* tail : {".weight", ".SCB"}) {
        const auto at = name.find(tail);
        if (at != std::string::npos && bnb_modules.contains(name.substr(0, at))) return true;
      }
      return false;
    };
    // Parameters count logical weights: a GPTQ module's K x N, not its packed words.
    int64_t params = 0;
    uint64_t quant_bytes = 0;
    std::map<std::string, int64_t> by_dtype;
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& name : ckpt.names()) {
      const auto& t = ckpt.get(name);
      by_dtype[std::string(dtype_name(t.dtype))] += t.numel();
      tensors.push_back({{"name", name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
      const bool packed = name.ends_with(".qweight") || name.ends_with(".qzeros") || name.ends_with(".scales") ||
                          name.ends_with(".g_idx") || bnb_tensor(name);
      if (packed) {
        quant_bytes += t.data.size();
      } else {
        params += t.numel();
      }
      if (name.ends_with(".g_idx")) {
        const std::string prefix = name.substr(0, name.size() - 6);
        const io::TensorView* sc = ckpt.find(prefix + ".scales");
        if (sc != nullptr && sc->shape.size() == 2 && t.shape.size() == 1) quant_weights += t.shape[0] * sc->shape[1];
      }
    }
    params += quant_weights;
    const auto qc = bnb_ckpt ? std::nullopt : quant::read_quantize_config(a->model);
    nlohmann::json j = {
        {"architecture", c.architecture_name},
        {"family", model::to_string(c.arch)},
        {"hidden_size", c.hidden},
        {"intermediate_size", c.intermediate},
        {"layers", c.layers},
        {"heads", c.heads},
        {"kv_heads", c.kv_heads},
        {"head_dim", c.head_dim},
        {"vocab_size", c.vocab},
        {"max_position_embeddings", c.max_positions},
        {"rope_theta", c.rope.theta},
        {"rope_scaling", c.rope.scaling == model::RopeScaling::kLlama3 ? "llama3" : "none"},
        {"tie_word_embeddings", c.tie_embeddings},
        {"eos_token_ids", c.eos_ids},
        {"parameters", params},
        {"bytes", ckpt.total_bytes()},
        {"shards", ckpt.shards().size()},
        {"dtypes", by_dtype},
        {"bits_per_parameter", double(ckpt.total_bytes()) * 8.0 / double(params)},
    };
    const quant::bnb::BnbConfig bnb = bnb_config(a->load);
    std::string bnb_line;
    if (bnb.enabled()) {
      if (qc || bnb_ckpt) {
        throw Error(ErrorKind::kInvalidArgument, a->model + ": already quantized (" + (qc ? "GPTQ" : "bitsandbytes") +
                                                     "); --load-in-* needs a dense checkpoint");
      }
      // What --load-in-4bit/--load-in-8bit would make of the decoder layers' linears.
      uint64_t dense = 0, packed = 0;
      int64_t weights = 0;
      for (int64_t l = 0; l < c.layers; ++l) {
        for (const model::Slot s : model::kAllSlots) {
          const auto [out, in] = model::slot_shape(c, s);
          dense += ckpt.get(model::module_name(l, s) + ".weight").data.size();
          packed += quant::bnb::packed_bytes(bnb, out, in);
          weights += out * in;
        }
      }
      j["load_quantization"] = {{"method", quant::bnb::describe(bnb)}, {"weights", weights},
                                 {"dense_bytes", dense}, {"quantized_bytes", packed}};
      char line[256];
      std::snprintf(line, sizeof line, "load-time quantization %s: linears %.2f MiB -> %.2f MiB (saves %.2f MiB)\n",
                    quant::bnb::describe(bnb).c_str(), double(dense) / (1 << 20), double(packed) / (1 << 20),
                    double(dense - packed) / (1 << 20));
      bnb_line = line;
    }
    std::vector<quant::LoaderVerdict> loaders;
    if (qc) {
      // The settings as read (GPTQModel's meta fields included), in our layout.
      j["quantization_config"] = nlohmann::json::parse(qc->to_json("").dump());  // ordered -> plain json
      j["quantization_config"]["meta"]["quantizer"] = qc->quantizers;
      loaders = quant::loader_support(*qc);
      for (const auto& l : loaders) j["loaders"][quant::to_string(l.loader)] = {{"loads", l.loads}, {"why", l.why}};
      j["quantized_weights"] = quant_weights;
      j["bits_per_quantized_weight"] = quant_weights > 0 ? double(quant_bytes) * 8.0 / double(quant_weights) : 0.0;
    }
    if (bnb_ckpt) {
      j["quantization_config"] = {{"quant_method", "bitsandbytes"},
                                  {"type", quant::bnb::type_name(bnb_ckpt->type)},
                                  {"double_quant", bnb_ckpt->absmax == quant::bnb::AbsmaxStorage::kDoubleQuant}};
      j["quantized_weights"] = quant_weights;
      j["bits_per_quantized_weight"] = quant_weights > 0 ? double(quant_bytes) * 8.0 / double(quant_weights) : 0.0;
    }
    // On a GPU: whether the weights fit in what the device has free.
    std::string device_line;
    if ((a->device.device == "auto" ? backend::default_backend() : a->device.device) != "cpu") {
      const auto be = open_backend(a->device, a->model);
      const backend::MemoryStats m = be->memory();
      j["device"] = {{"name", be->name()}, {"used_bytes", m.device_used}, {"total_bytes", m.device_total}};
      char line[256];
      std::snprintf(line, sizeof line, "%s: %.0f MiB free of %.0f MiB; the weights take %.0f MiB\n", be->name().c_str(),
                    double(m.device_total - m.device_used) / (1 << 20), double(m.device_total) / (1 << 20),
                    double(ckpt.total_bytes()) / (1 << 20));
      device_line = line;
    }
    if (a->json) {
      j["tensors"] = tensors;
      std::printf("%s\n", j.dump(1).c_str());
      return 0;
    }
    std::printf("%s (%s): %lld layers, hidden %lld, MLP %lld, heads %lld (kv %lld, head_dim %lld), vocab %lld\n",
                c.architecture_name.c_str(), model::to_string(c.arch), (long long)c.layers, (long long)c.hidden,
                (long long)c.intermediate, (long long)c.heads, (long long)c.kv_heads, (long long)c.head_dim,
                (long long)c.vocab);
    std::printf("context %lld, rope theta %g%s, %s embeddings\n", (long long)c.max_positions, c.rope.theta,
                c.rope.scaling == model::RopeScaling::kLlama3 ? " (llama3 scaling)" : "",
                c.tie_embeddings ? "tied" : "separate");
    std::printf("parameters %.2f M, %.1f MB in %zu shard(s)\n", double(params) / 1e6,
                double(ckpt.total_bytes()) / 1e6, ckpt.shards().size());
    for (const auto& [dt, n] : by_dtype) std::printf("  %-5s %lld elements\n", dt.c_str(), (long long)n);
    std::printf("%.3f bits per parameter overall\n", j["bits_per_parameter"].get<double>());
    if (qc) {
      std::string by;
      for (const auto& q : qc->quantizers) {
        if (!by.empty()) by += ", ";
        by += q;
      }
      std::printf("GPTQ %d-bit, group %d, %s, desc_act %s, format %s, lm_head %s, %zu dynamic rule(s), by %s\n",
                  qc->defaults.bits, qc->defaults.group_size, qc->defaults.sym ? "sym" : "asym",
                  qc->defaults.desc_act ? "on" : "off", qc->format == quant::Format::kV1 ? "gptq (v1)" : "gptq_v2",
                  qc->lm_head ? "on" : "off", qc->dynamic.size(), by.empty() ? "unknown" : by.c_str());
      std::printf("made with act_group_aware %s, static_groups %s, true_sequential %s, damp %.3g (+%.3g), mse %s\n",
                  qc->act_group_aware ? "on" : "off", qc->static_groups ? "on" : "off",
                  qc->true_sequential ? "on" : "off", qc->damp_percent, qc->damp_auto_increment,
                  qc->mse ? "on" : "off");
      std::printf("%.2f M quantized weights at %.3f bits each (codes + scales + zeros + g_idx)\n",
                  double(quant_weights) / 1e6, j["bits_per_quantized_weight"].get<double>());
      std::printf("loaders (from their source; see README \"Which loaders take what\"):\n");
      for (const auto& l : loaders) {
        std::printf("  %-13s %s%s%s\n", quant::to_string(l.loader), l.loads ? "yes" : "no", l.why.empty() ? "" : ": ",
                    l.why.c_str());
      }
    }
    if (bnb_ckpt) {
      // The 4-bit block size is per layer (each quant_state's); the config has none.
      std::printf("bitsandbytes %s%s: %zu linears, %.2f M quantized weights at %.3f bits each (codes + scales)\n",
                  quant::bnb::type_name(bnb_ckpt->type),
                  bnb_ckpt->absmax == quant::bnb::AbsmaxStorage::kDoubleQuant ? " double-quant" : "", bnb_modules.size(), double(quant_weights) / 1e6,
                  j["bits_per_quantized_weight"].get<double>());
    }
    std::fputs(bnb_line.c_str(), stdout);
    std::fputs(device_line.c_str(), stdout);
    if (a->tensors) {
      for (const auto& t : tensors) {
        std::printf("  %-60s %-5s %s\n", t["name"].get<std::string>().c_str(),
                    t["dtype"].get<std::string>().c_str(), t["shape"].dump().c_str());
      }
    }
    return 0;
  };
}

}  // namespace gptq::cli
