// GPTQ (or RTN) quantization of a model directory into a GPTQ checkpoint: the same
// quant::quantize_model the CLI runs, on the CPU backend as the CLI does. The settings
// arrive as JSON from the Python QuantizeConfig (GPTQModel's field names) and become the
// library's QuantizeConfig here, in one place.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <nlohmann/json.hpp>

#include "backend/registry.h"
#include "core/error.h"
#include "format/quant_config.h"
#include "model/config.h"
#include "native.h"
#include "quant/calibration.h"
#include "quant/pipeline.h"
#include "tokenizer/tokenizer.h"

namespace gptq::py {
namespace {

using Json = nlohmann::ordered_json;

// {"method", "bits", "group_size", "sym", "desc_act", "static_groups", "true_sequential",
//  "damp_percent", "damp_auto_increment", "mse", "act_group_aware", "lm_head", "dynamic",
//  "format"}: every key present (the Python layer fills the defaults); "dynamic" null or
// GPTQModel's rules; "format" null for the library's default_format.
quant::QuantizeConfig config_from_json(const std::string& text) {
  const Json j = Json::parse(text);
  quant::QuantizeConfig c;
  const std::string method = j.at("method").get<std::string>();
  if (method != "gptq" && method != "rtn") {
    throw Error(ErrorKind::kInvalidArgument, "QuantizeConfig.method '" + method + "': expected 'gptq' or 'rtn'");
  }
  c.method = method == "rtn" ? quant::Method::kRtn : quant::Method::kGptq;
  c.defaults = {.bits = j.at("bits").get<int>(),
                .group_size = j.at("group_size").get<int>(),
                .sym = j.at("sym").get<bool>(),
                .desc_act = j.at("desc_act").get<bool>()};
  c.static_groups = j.at("static_groups").get<bool>();
  c.true_sequential = j.at("true_sequential").get<bool>();
  c.damp_percent = j.at("damp_percent").get<double>();
  c.damp_auto_increment = j.at("damp_auto_increment").get<double>();
  c.mse = j.at("mse").get<bool>();
  c.act_group_aware = j.at("act_group_aware").get<bool>();
  c.lm_head = j.at("lm_head").get<bool>();
  if (!j.at("dynamic").is_null()) c.dynamic = quant::parse_dynamic(j.at("dynamic"), "QuantizeConfig.dynamic");
  c.format = j.at("format").is_null() ? quant::default_format(c)
                                      : quant::format_from_checkpoint(j.at("format").get<std::string>());
  c.validate();
  return c;
}

nb::dict module_dict(const quant::ModuleReport& m) {
  nb::dict d;
  d["name"] = m.name;
  d["layer"] = m.layer;
  d["quantized"] = m.quantized;
  d["bits"] = m.bits;
  d["group_size"] = m.group_size;
  d["desc_act"] = m.desc_act;
  d["loss"] = m.loss;
  d["damp"] = m.damp;
  d["retries"] = m.retries;
  d["seconds"] = m.seconds;
  return d;
}

// Builds the config (throwing ValueError for a setting the library refuses) and, given a
// model, checks every module's shape against it, as `gptq quantize` does before any work.
void check_config(const std::string& config_json, const std::string& model_dir) {
  const quant::QuantizeConfig c = config_from_json(config_json);
  if (model_dir.empty()) return;
  without_gil([&] {
    model::require_model_dir(model_dir, c.method == quant::Method::kGptq ? model::ModelFiles::kConfigAndTokenizer
                                                                         : model::ModelFiles::kConfig);
    quant::check_quantizable(model_dir, c);
  });
}

nb::dict quantize(const std::string& model_dir, const std::string& out_dir,
                  const std::vector<std::vector<int32_t>>& samples, const std::string& config_json,
                  int64_t batch_tokens, uint64_t max_shard_bytes, bool overwrite, nb::object on_module,
                  nb::object on_layer) {
  quant::PipelineOptions po{.config = config_from_json(config_json),
                            .out_dir = out_dir,
                            .writer = {.max_shard_bytes = max_shard_bytes, .overwrite = overwrite},
                            .batch_tokens = batch_tokens};
  po.on_module = [&](const quant::ModuleReport& m) {
    with_python([&] {
      if (!on_module.is_none()) on_module(module_dict(m));
    });
  };
  po.on_layer = [&](int64_t done, int64_t total, double seconds) { call_back(on_layer, done, total, seconds); };
  quant::CalibSet calib;
  calib.samples = samples;
  calib.mode = quant::CalibMode::kDocuments;
  calib.documents = int64_t(samples.size());
  calib.documents_tokenized = calib.documents;
  for (const auto& s : samples) {
    calib.seq_len = std::max<int64_t>(calib.seq_len, int64_t(s.size()));
    calib.tokens_available += int64_t(s.size());
  }
  const quant::QuantizeResult r = without_gil([&] {
    return quant::quantize_model(model_dir, calib, *backend::make_cpu_backend(), po);
  });
  nb::dict d;
  d["out"] = r.checkpoint.dir.string();
  d["seconds"] = r.seconds;
  d["peak_rss_bytes"] = r.peak_rss;
  d["tensor_bytes"] = r.checkpoint.tensor_bytes;
  d["shards"] = r.checkpoint.shards.size();
  d["bpw_quantized"] = r.bpw_quantized;
  d["bpw_total"] = r.bpw_total;
  d["quantized_params"] = r.quantized_params;
  d["total_params"] = r.total_params;
  nb::list modules;
  for (const auto& m : r.modules) modules.append(module_dict(m));
  d["modules"] = modules;
  d["calibration"] = calib.describe();
  return d;
}

// The CLI's calibration loader (files, windows or documents, seeded), for callers that
// want `gptq quantize --calib` samples from Python.
std::vector<std::vector<int32_t>> load_calibration(const std::string& model_dir, const std::vector<std::string>& files,
                                                   const std::string& mode, int64_t n_samples, int64_t seq_len,
                                                   uint64_t seed, const std::string& field) {
  if (mode != "windows" && mode != "docs") {
    throw Error(ErrorKind::kInvalidArgument, "calibration mode '" + mode + "': expected 'windows' or 'docs'");
  }
  return without_gil([&] {
    model::require_model_dir(model_dir, model::ModelFiles::kConfigAndTokenizer);
    const auto tk = tok::Tokenizer::load_for_model(model_dir);
    const int64_t ctx = model::load_config(model_dir).max_positions;
    quant::CalibOptions co{.jsonl_field = field,
                           .n_samples = n_samples,
                           .seq_len = seq_len > 0 ? seq_len : std::min<int64_t>(2048, ctx),
                           .mode = mode == "docs" ? quant::CalibMode::kDocuments : quant::CalibMode::kRandomWindows,
                           .seed = seed};
    for (const auto& f : files) co.files.emplace_back(f);
    return quant::load_calibration(tk, co).samples;
  });
}

}  // namespace

void bind_quantize(nb::module_& m) {
  m.def("check_quantize_config", &check_config, nb::arg("config_json"), nb::arg("model_dir") = "");
  m.def("quantize", &quantize, nb::arg("model_dir"), nb::arg("out_dir"), nb::arg("samples"), nb::arg("config_json"),
        nb::arg("batch_tokens"), nb::arg("max_shard_bytes"), nb::arg("overwrite"), nb::arg("on_module").none(),
        nb::arg("on_layer").none());
  m.def("load_calibration", &load_calibration, nb::arg("model_dir"), nb::arg("files"), nb::arg("mode") = "windows",
        nb::arg("n_samples") = 128, nb::arg("seq_len") = 0, nb::arg("seed") = 0, nb::arg("field") = "text");
}

}  // namespace gptq::py
