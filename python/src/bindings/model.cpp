// A model ready to run: _gptqcpp.Model holds the backend the device argument chose and
// the model loaded on it; generate, perplexity (the GPTQ-paper windows and per-text), and
// multiple-choice evaluation are the library's (eval/), as the CLI calls them.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <mutex>

#include "backend/registry.h"
#include "core/memory.h"
#include "eval/generate.h"
#include "eval/mc_task.h"
#include "eval/multiple_choice.h"
#include "eval/perplexity.h"
#include "eval/text_perplexity.h"
#include "model/config.h"
#include "model/model.h"
#include "native.h"

namespace gptq::py {
namespace {

DType parse_dtype(const std::string& dtype, const std::string& model, const std::string& spec) {
  if (dtype == "auto") return model::default_activations(model, spec);
  if (dtype == "float16" || dtype == "f16") return DType::kF16;
  if (dtype == "bfloat16" || dtype == "bf16") return DType::kBF16;
  if (dtype == "float32" || dtype == "f32") return DType::kF32;
  throw Error(ErrorKind::kInvalidArgument,
              "dtype '" + dtype + "': expected 'auto', 'float16', 'bfloat16' or 'float32'");
}

class Runtime {
 public:
  // `device`: "cpu", "cuda", "cuda:N" or "auto"; the backend registry makes it.
  Runtime(const std::string& path, const std::string& device, const std::string& dtype) {
    model::require_model_dir(path, model::ModelFiles::kConfig);
    const std::string spec = device == "auto" ? backend::default_backend() : device;
    activations_ = parse_dtype(dtype, path, spec);
    backend_ = backend::make_backend(spec, {.activations = activations_});
    model_ = std::make_unique<model::Model>(model::Model::load(path, *backend_));
  }

  nb::dict generate(const std::vector<int32_t>& prompt, const eval::GenerateOptions& options, nb::object on_token) {
    eval::GenerateResult r = without_gil([&] {
      std::lock_guard lock(mutex_);
      eval::GenerateOptions o = options;
      o.on_token = [&](int32_t id) { call_back(on_token, id); };
      return eval::generate(*model_, prompt, o);
    });
    nb::dict d;
    d["tokens"] = std::move(r.tokens);
    d["sampled"] = r.sampled;
    d["eos"] = r.eos;
    d["prefill_seconds"] = r.prefill_seconds;
    d["decode_seconds"] = r.decode_seconds;
    return d;
  }

  nb::dict perplexity(const std::vector<int32_t>& tokens, int64_t ctx, int64_t max_windows, nb::object on_window) {
    const eval::PplResult r = without_gil([&] {
      std::lock_guard lock(mutex_);
      return eval::perplexity(*model_, tokens,
                              {.ctx = ctx, .max_windows = max_windows, .on_window = [&](int64_t done, int64_t total, double ppl) {
                                 call_back(on_window, done, total, ppl);
                               }});
    });
    nb::dict d;
    d["ppl"] = r.ppl;
    d["mean_nll"] = r.mean_nll;
    d["tokens"] = r.tokens;
    d["windows"] = r.windows;
    d["scored_tokens"] = r.scored_tokens;
    d["ctx"] = r.ctx;
    d["seconds"] = r.seconds;
    return d;
  }

  nb::dict text_perplexity(const tok::Tokenizer& tk, const std::vector<std::string>& texts, int64_t max_length,
                           nb::object on_text) {
    eval::TextPplResult r = without_gil([&] {
      std::lock_guard lock(mutex_);
      return eval::text_perplexity(*model_, tk, texts,
                                   {.max_length = max_length, .on_text = [&](int64_t done, int64_t total) {
                                      call_back(on_text, done, total);
                                    }});
    });
    nb::dict d;
    d["mean_ppl"] = r.mean_ppl;
    d["token_weighted_ppl"] = r.token_weighted_ppl;
    d["per_text_ppl"] = std::move(r.ppl);
    d["texts"] = r.texts;
    d["skipped"] = r.skipped;
    d["truncated"] = r.truncated;
    d["scored_tokens"] = r.scored_tokens;
    d["max_length"] = r.max_length;
    d["seconds"] = r.seconds;
    return d;
  }

  // One task file; the result as `gptq eval --json` prints each task (eval::to_json).
  std::string evaluate(const tok::Tokenizer& tk, const std::string& task_file, int64_t limit, nb::object on_item) {
    return without_gil([&] {
      const eval::McTask task = eval::load_mc_task(task_file, limit);
      std::lock_guard lock(mutex_);
      const eval::McResult r = eval::evaluate_multiple_choice(
          *model_, tk, task, {.on_item = [&](int64_t done, int64_t total, int64_t requests) {
            call_back(on_item, done, total, requests);
          }});
      return eval::to_json(r, eval::PerItem::kOmit).dump();
    });
  }

  nb::dict info() const {
    const model::ModelConfig& c = model_->config();
    const backend::MemoryStats mem = backend_->memory();
    nb::dict d;
    d["device"] = backend_->name();
    d["activations"] = std::string(dtype_name(activations_));
    d["layers"] = c.layers;
    d["hidden"] = c.hidden;
    d["vocab"] = c.vocab;
    d["max_positions"] = c.max_positions;
    d["eos_ids"] = c.eos_ids;
    d["bos_id"] = c.bos_id;
    d["weight_bytes"] = model_->weight_bytes();
    d["peak_host_bytes"] = peak_rss_bytes();
    d["peak_device_bytes"] = mem.peak_allocated;
    d["device_used_bytes"] = mem.device_used;
    d["device_total_bytes"] = mem.device_total;
    return d;
  }

 private:
  // The backend outlives the model that holds a reference to it.
  std::unique_ptr<backend::Backend> backend_;
  std::unique_ptr<model::Model> model_;
  DType activations_ = DType::kF32;
  // Native calls run without the GIL; one at a time per model (the KV caches, the
  // backend's scratch).
  std::mutex mutex_;
};

}  // namespace

void bind_model(nb::module_& m) {
  nb::class_<Runtime>(m, "Model")
      .def(
          "__init__",
          [](Runtime* self, const std::string& path, const std::string& device, const std::string& dtype) {
            without_gil([&] { new (self) Runtime(path, device, dtype); });
          },
          nb::arg("path"), nb::arg("device") = "auto", nb::arg("dtype") = "auto")
      .def(
          "generate",
          [](Runtime& r, const std::vector<int32_t>& prompt, int64_t max_new_tokens, float temperature, int64_t top_k,
             float top_p, uint64_t seed, nb::object on_token) {
            return r.generate(prompt,
                              {.max_new_tokens = max_new_tokens,
                               .sampling = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = seed}},
                              std::move(on_token));
          },
          nb::arg("prompt"), nb::arg("max_new_tokens"), nb::arg("temperature"), nb::arg("top_k"), nb::arg("top_p"),
          nb::arg("seed"), nb::arg("on_token").none())
      .def("perplexity", &Runtime::perplexity, nb::arg("tokens"), nb::arg("ctx"), nb::arg("max_windows"),
           nb::arg("on_window").none())
      .def("text_perplexity", &Runtime::text_perplexity, nb::arg("tokenizer"), nb::arg("texts"), nb::arg("max_length"),
           nb::arg("on_text").none())
      .def("evaluate", &Runtime::evaluate, nb::arg("tokenizer"), nb::arg("task_file"), nb::arg("limit"),
           nb::arg("on_item").none())
      .def("info", &Runtime::info);
}

}  // namespace gptq::py
