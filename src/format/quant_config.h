// The quantization settings of a whole model: what `gptq quantize` takes, what it
// writes as quantization_config (config.json) and quantize_config.json, and what the
// loader reads back from any GPTQ checkpoint (ours, GPTQModel's, AutoGPTQ's).
//
// Per-module rules follow GPTQModel's `dynamic`: an ordered map from a regex (Python
// re.match semantics: anchored at the start of the module name) to overrides.
//   "-:regex"          the module is not quantized (kept in the source dtype)
//   "+:regex" / regex  the module uses these overrides of bits/group_size/sym/desc_act
// The first matching rule wins, in the order written (JSON is parsed order-preserving).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "format/gptq_format.h"

namespace gptq::quant {

enum class Method { kGptq, kRtn };

// Settings that a dynamic rule may override.
struct ModuleSettings {
  int bits = 4;
  int group_size = 128;  // -1: one group over all of K
  bool sym = true;
  bool desc_act = false;
};

struct DynamicRule {
  enum class Action { kOverride, kSkip };
  std::string key;      // as written: "-:...", "+:..." or a bare regex
  std::string pattern;  // the regex without its prefix
  Action action = Action::kOverride;
  nlohmann::ordered_json overrides;  // {"bits": 8, "group_size": 32, ...} for kOverride
};

struct QuantizeConfig {
  Method method = Method::kGptq;
  ModuleSettings defaults;
  bool static_groups = false;
  bool true_sequential = true;
  double damp_percent = 0.05;
  double damp_auto_increment = 0.01;
  bool mse = false;              // MSE clipping search (GPTQModel's mse; grid 100, maxshrink 0.8, norm 2.4)
  bool act_group_aware = false;  // GAR
  bool lm_head = false;
  Format format = Format::kV1;   // checkpoint_format "gptq" (v1) or "gptq_v2"; see default_format
  std::vector<DynamicRule> dynamic;
  // meta.quantizer as read, "tool:version" each: {"gptq.cpp:0.1.0"}, {"gptqmodel:7.6.0"},
  // {"optimum:2.3.0", "gptqmodel:7.6.0"}. Written as "gptq.cpp:" + to_json's version.
  std::vector<std::string> quantizers;

  // The settings for a module ("model.layers.0.self_attn.q_proj"), or nullopt when a
  // "-:" rule excludes it. Throws kFormat for a bad pattern or override.
  std::optional<ModuleSettings> resolve(const std::string& module) const;

  // Throws kInvalidArgument naming the field (bits, group size, damping ranges...).
  void validate() const;

  // quantization_config as transformers / optimum / vLLM / GPTQModel read it.
  nlohmann::ordered_json to_json(const std::string& quantizer_version) const;
  // From a quantization_config object; `what` names the file for errors (kFormat).
  // Settings that do not take part in inference (damp_percent, damp_auto_increment,
  // static_groups, true_sequential, mse, act_group_aware) are read at the top level, or
  // else under "meta", where GPTQModel keeps them.
  static QuantizeConfig from_json(const nlohmann::ordered_json& j, const std::string& what);

  // The settings of every kind of module: the defaults and each override rule applied
  // to them (which modules a rule matches depends on the model).
  std::vector<ModuleSettings> all_settings() const;
};

// The checkpoint format written unless the user chooses one: v1 ("gptq") while every
// module is symmetric, since every GPTQ reader takes it; v2 ("gptq_v2") as soon as one
// is asymmetric, because GPTQModel refuses asymmetric v1 checkpoints not written by
// itself (its loader checks meta.quantizer) and v1 cannot store a zero point of 0 (see
// QuantizerConfig::min_zero). The loaders' verdicts are in format/loader_support.h.
Format default_format(const QuantizeConfig& c);

// Parses --dynamic: a JSON object given inline or a path to a JSON file holding one.
std::vector<DynamicRule> parse_dynamic(const std::string& inline_json_or_path);
std::vector<DynamicRule> parse_dynamic(const nlohmann::ordered_json& j, const std::string& what);

// Reads quantization_config from dir/config.json, else dir/quantize_config.json.
// nullopt when the model is not quantized.
std::optional<QuantizeConfig> read_quantize_config(const std::filesystem::path& dir);

}  // namespace gptq::quant
