// gptq info MODEL [--json]
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "model/config.h"

namespace gptq::cli {

namespace {
struct InfoArgs {
  std::string model;
  bool json = false;
  bool tensors = false;
};
}  // namespace

Runner add_info(CLI::App& app) {
  auto a = std::make_shared<InfoArgs>();
  app.add_option("model", a->model, "Checkpoint directory (config.json + safetensors)")->required();
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  app.add_flag("--tensors", a->tensors, "List every tensor (always included in --json)");
  return [a] {
    const model::ModelConfig c = model::load_config(a->model);
    const io::Checkpoint ckpt(a->model);
    int64_t params = 0;
    std::map<std::string, int64_t> by_dtype;
    nlohmann::json tensors = nlohmann::json::array();
    for (const auto& name : ckpt.names()) {
      const auto& t = ckpt.get(name);
      params += t.numel();
      by_dtype[std::string(dtype_name(t.dtype))] += t.numel();
      tensors.push_back({{"name", name}, {"dtype", dtype_name(t.dtype)}, {"shape", t.shape}});
    }
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
    };
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
