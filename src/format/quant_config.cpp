#include "format/quant_config.h"

#include "core/error.h"
#include "io/json_file.h"
#include "tokenizer/regex.h"

namespace gptq::quant {

using json = nlohmann::ordered_json;

namespace {

[[noreturn]] void bad(const std::string& what, const std::string& msg) {
  throw Error(ErrorKind::kFormat, what + ": " + msg);
}

// Python's re.match: a match that starts at position 0. The leftmost match starts at 0
// exactly when some match does, so the first find_all result decides.
bool matches_at_start(const std::string& pattern, const std::string& text) {
  const tok::Regex re(pattern, "dynamic rule \"" + pattern + "\"");
  const auto found = re.find_all(text);
  return !found.empty() && found.front().first == 0;
}

void apply_overrides(ModuleSettings& s, const json& o, const std::string& what) {
  for (const auto& [k, v] : o.items()) {
    if (k == "bits" && v.is_number_integer()) {
      s.bits = v.get<int>();
    } else if (k == "group_size" && v.is_number_integer()) {
      s.group_size = v.get<int>();
    } else if (k == "sym" && v.is_boolean()) {
      s.sym = v.get<bool>();
    } else if (k == "desc_act" && v.is_boolean()) {
      s.desc_act = v.get<bool>();
    } else {
      bad(what, "dynamic override \"" + k + "\" = " + v.dump() +
                    " is not supported (bits, group_size: integers; sym, desc_act: booleans)");
    }
  }
}

void validate_settings(const ModuleSettings& s, const std::string& where) {
  if (!bits_supported(s.bits)) {
    throw Error(ErrorKind::kInvalidArgument, where + ": bits " + std::to_string(s.bits) + " is not one of 2, 3, 4, 8");
  }
  if (s.group_size != -1 && s.group_size <= 0) {
    throw Error(ErrorKind::kInvalidArgument, where + ": group size " + std::to_string(s.group_size) +
                                                 " must be -1 or positive");
  }
}

}  // namespace

std::vector<DynamicRule> parse_dynamic(const json& j, const std::string& what) {
  if (j.is_null()) return {};
  if (!j.is_object()) bad(what, "dynamic must be an object mapping regex -> overrides");
  std::vector<DynamicRule> rules;
  for (const auto& [key, overrides] : j.items()) {
    DynamicRule r;
    r.key = key;
    if (key.rfind("-:", 0) == 0) {
      r.action = DynamicRule::Action::kSkip;
      r.pattern = key.substr(2);
    } else {
      r.pattern = key.rfind("+:", 0) == 0 ? key.substr(2) : key;
      if (!overrides.is_object()) bad(what, "dynamic rule \"" + key + "\" needs an object of overrides");
      ModuleSettings probe;
      apply_overrides(probe, overrides, what);
      r.overrides = overrides;
    }
    tok::Regex check(r.pattern, what + ": dynamic rule \"" + key + "\"");
    rules.push_back(std::move(r));
  }
  return rules;
}

std::vector<DynamicRule> parse_dynamic(const std::string& arg) {
  const auto first = arg.find_first_not_of(" \t\n");
  if (first != std::string::npos && arg[first] == '{') return parse_dynamic(io::parse_ordered_json(arg, "--dynamic"), "--dynamic");
  return parse_dynamic(io::read_ordered_json_file(arg), arg);
}

std::optional<ModuleSettings> QuantizeConfig::resolve(const std::string& module) const {
  for (const auto& r : dynamic) {
    if (!matches_at_start(r.pattern, module)) continue;
    if (r.action == DynamicRule::Action::kSkip) return std::nullopt;
    ModuleSettings s = defaults;
    apply_overrides(s, r.overrides, "dynamic rule \"" + r.key + "\"");
    return s;
  }
  return defaults;
}

void QuantizeConfig::validate() const {
  validate_settings(defaults, "quantize config");
  for (const auto& r : dynamic) {
    if (r.action == DynamicRule::Action::kSkip) continue;
    ModuleSettings s = defaults;
    apply_overrides(s, r.overrides, "dynamic rule \"" + r.key + "\"");
    validate_settings(s, "dynamic rule \"" + r.key + "\"");
  }
  if (!(damp_percent > 0.0 && damp_percent < 1.0)) {
    throw Error(ErrorKind::kInvalidArgument, "damp_percent " + std::to_string(damp_percent) + " must be in (0, 1)");
  }
  if (!(damp_auto_increment >= 0.0 && damp_auto_increment < 1.0)) {
    throw Error(ErrorKind::kInvalidArgument, "damp_auto_increment must be in [0, 1)");
  }
}

json QuantizeConfig::to_json(const std::string& version) const {
  json dyn = json::object();
  for (const auto& r : dynamic) dyn[r.key] = r.action == DynamicRule::Action::kSkip ? json::object() : r.overrides;
  const char* fmt = format == Format::kV1 ? "gptq" : "gptq_v2";
  return {
      {"quant_method", "gptq"},
      {"bits", defaults.bits},
      {"group_size", defaults.group_size},
      {"desc_act", defaults.desc_act},
      {"sym", defaults.sym},
      {"lm_head", lm_head},
      {"static_groups", static_groups},
      {"true_sequential", true_sequential},
      {"damp_percent", damp_percent},
      {"damp_auto_increment", damp_auto_increment},
      {"mse", mse ? 2.4 : 0.0},
      {"act_group_aware", act_group_aware},
      {"format", fmt},
      {"checkpoint_format", fmt},
      {"pack_dtype", "int32"},
      {"dynamic", dynamic.empty() ? json(nullptr) : dyn},
      {"meta",
       {{"quantizer", "gptq.cpp:" + version},
        {"method", method == Method::kGptq ? "gptq" : "rtn"},
        {"damp_percent", damp_percent},
        {"damp_auto_increment", damp_auto_increment},
        {"static_groups", static_groups},
        {"true_sequential", true_sequential},
        {"mse", mse ? 2.4 : 0.0},
        {"act_group_aware", act_group_aware}}},
  };
}

QuantizeConfig QuantizeConfig::from_json(const json& j, const std::string& what) {
  if (!j.is_object()) bad(what, "quantization_config is not an object");
  QuantizeConfig c;
  const std::string method = io::json_get_or<std::string>(j, "quant_method", "gptq", what);
  if (method != "gptq") {
    throw Error(ErrorKind::kUnsupported, what + ": quant_method \"" + method + "\" is not supported (gptq)");
  }
  c.defaults.bits = int(io::json_get<int64_t>(j, "bits", what));
  c.defaults.group_size = int(io::json_get_or<int64_t>(j, "group_size", 128, what));
  c.defaults.desc_act = io::json_get_or<bool>(j, "desc_act", false, what);
  c.defaults.sym = io::json_get_or<bool>(j, "sym", true, what);
  c.lm_head = io::json_get_or<bool>(j, "lm_head", false, what);
  // Settings that only describe how the weights were made: top level (AutoGPTQ, ours),
  // else meta (GPTQModel), as GPTQModel's own reader looks them up.
  const json no_meta = json::object();
  const json& meta = j.contains("meta") && j["meta"].is_object() ? j["meta"] : no_meta;
  const std::string meta_what = what + " meta";
  auto made_with = [&](const char* key) -> std::pair<const json&, const std::string&> {
    if (j.contains(key) && !j[key].is_null()) return {j, what};
    return {meta, meta_what};
  };
  auto flag = [&](const char* key, bool fallback) {
    const auto [obj, where] = made_with(key);
    return io::json_get_or<bool>(obj, key, fallback, where);
  };
  auto number = [&](const char* key, double fallback) {
    const auto [obj, where] = made_with(key);
    return io::json_get_or<double>(obj, key, fallback, where);
  };
  c.static_groups = flag("static_groups", false);
  c.true_sequential = flag("true_sequential", true);
  c.damp_percent = number("damp_percent", 0.05);
  c.damp_auto_increment = number("damp_auto_increment", 0.01);
  if (const auto [obj, where] = made_with("mse"); obj.contains("mse") && !obj["mse"].is_null()) {
    // GPTQModel: a norm (0.0 = off, e.g. 2.4); older files: a boolean.
    const json& m = obj["mse"];
    if (!m.is_number() && !m.is_boolean()) bad(where, "mse must be a number or boolean");
    c.mse = m.is_boolean() ? m.get<bool>() : m.get<double>() > 0.0;
  }
  c.act_group_aware = flag("act_group_aware", false);
  // gptq.cpp records RTN runs as meta.method "rtn" (quant_method names the format: "gptq").
  if (meta.contains("method") && meta["method"] == "rtn") c.method = Method::kRtn;
  // checkpoint_format (optimum, GPTQModel) or format (GPTQModel); v1 when absent.
  std::string fmt = io::json_get_or<std::string>(j, "checkpoint_format", "", what);
  if (fmt.empty()) fmt = io::json_get_or<std::string>(j, "format", "gptq", what);
  c.format = format_from_checkpoint(fmt);
  if (j.contains("dynamic")) c.dynamic = parse_dynamic(j["dynamic"], what);
  // A string (ours, older GPTQModel) or a list of them (GPTQModel, optimum).
  const json& q = meta.contains("quantizer") ? meta["quantizer"] : json();
  for (const json& v : q.is_array() ? q : json::array({q})) {
    if (v.is_string()) c.quantizers.push_back(v.get<std::string>());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    bad(what, e.what());
  }
  return c;
}

std::vector<ModuleSettings> QuantizeConfig::all_settings() const {
  std::vector<ModuleSettings> all = {defaults};
  for (const auto& r : dynamic) {
    if (r.action == DynamicRule::Action::kSkip) continue;
    ModuleSettings s = defaults;
    apply_overrides(s, r.overrides, "dynamic rule \"" + r.key + "\"");
    all.push_back(s);
  }
  return all;
}

Format default_format(const QuantizeConfig& c) {
  for (const ModuleSettings& s : c.all_settings()) {
    if (!s.sym) return Format::kV2;
  }
  return Format::kV1;
}

std::optional<QuantizeConfig> read_quantize_config(const std::filesystem::path& dir) {
  const auto config = dir / "config.json";
  if (std::filesystem::exists(config)) {
    const json j = io::read_ordered_json_file(config);
    if (j.is_object() && j.contains("quantization_config") && !j["quantization_config"].is_null()) {
      return QuantizeConfig::from_json(j["quantization_config"], config.string() + " quantization_config");
    }
  }
  const auto qc = dir / "quantize_config.json";
  if (std::filesystem::exists(qc)) return QuantizeConfig::from_json(io::read_ordered_json_file(qc), qc.string());
  return std::nullopt;
}

}  // namespace gptq::quant
