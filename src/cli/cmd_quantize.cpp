// gptq quantize MODEL --out DIR --calib FILE... [options]: GPTQ (or RTN) to a standard
// GPTQ checkpoint. Defaults are GPTQModel's; the effective settings are echoed first.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/device_options.h"
#include "core/error.h"
#include "core/progress.h"
#include "eval/model_card.h"
#include "io/atomic_file.h"
#include "quant/calibration.h"
#include "format/loader_support.h"
#include "quant/parallel.h"
#include "quant/pipeline.h"
#include "backend/registry.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace gptq::cli {

namespace {

struct QuantizeArgs {
  std::string model;
  std::string out;
  std::vector<std::string> calib;
  std::string calib_mode = "windows";
  std::string calib_field = "text";
  int64_t n_samples = 128;
  int64_t seq_len = 0;
  uint64_t seed = 0;
  int bits = 4;
  int group_size = 128;
  bool desc_act = false;
  bool static_groups = false;
  bool asym = false;
  bool sym = false;
  double damp = 0.05;
  double damp_auto_increment = 0.01;
  bool mse = false;
  bool act_group_aware = true;
  bool lm_head = false;
  bool no_true_sequential = false;
  std::string dynamic;
  std::string method = "gptq";
  std::string format = "auto";
  std::string max_shard_size = "4GB";
  std::string write_queue = std::to_string(io::CheckpointWriterOptions{}.background_bytes);
  DeviceArgs device;
  std::string devices;  // empty: --device alone
  std::string max_device_memory;
  int64_t batch_size = 0;
  bool overwrite = false;
  bool resume = false;
  bool json = false;
  std::string eval_text;
  std::vector<std::string> eval_tasks;
};

// --devices: "all" -> cuda:0 .. cuda:N-1; "a,b,c" -> {a, b, c}; "" -> {}.
std::vector<std::string> device_list(const std::string& s) {
  std::vector<std::string> out;
  if (s == "all") {
    const int n = backend::cuda_device_count();
    if (n == 0) throw Error(ErrorKind::kDevice, "--devices all: no CUDA device");
    for (int i = 0; i < n; ++i) out.push_back("cuda:" + std::to_string(i));
    return out;
  }
  std::size_t from = 0;
  while (from < s.size()) {
    const std::size_t comma = std::min(s.find(',', from), s.size());
    if (comma == from) throw Error(ErrorKind::kInvalidArgument, "--devices " + s + ": an empty device name");
    out.push_back(s.substr(from, comma - from));
    from = comma + 1;
    if (comma + 1 == s.size()) throw Error(ErrorKind::kInvalidArgument, "--devices " + s + ": an empty device name");
  }
  return out;
}

// "4GB", "500MB", "2GiB", "1000000" -> bytes; `flag` names the option in errors.
uint64_t parse_size(const std::string& s, const std::string& flag) {
  std::size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(s, &pos);
  } catch (const std::exception&) {
    throw Error(ErrorKind::kInvalidArgument, flag + ": not a size: " + s);
  }
  const std::string unit = s.substr(pos);
  const std::pair<const char*, double> units[] = {{"", 1},      {"B", 1},          {"KB", 1e3},       {"MB", 1e6},
                                                  {"GB", 1e9},  {"KiB", 1024.0},   {"MiB", 1048576.0},
                                                  {"GiB", 1073741824.0}};
  for (const auto& [u, f] : units) {
    if (unit == u && v > 0) return uint64_t(v * f);
  }
  throw Error(ErrorKind::kInvalidArgument, flag + ": not a size: " + s + " (e.g. 4GB, 500MB, 2GiB)");
}

std::string settings_line(const quant::QuantizeConfig& c) {
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "method %s, bits %d, group size %d, %s, desc_act %s, act_group_aware %s, static_groups %s, "
                "true_sequential %s, damp %.3g (+%.3g on failure), mse %s, lm_head %s, format %s, %zu dynamic rule(s)",
                c.method == quant::Method::kGptq ? "gptq" : "rtn", c.defaults.bits, c.defaults.group_size,
                c.defaults.sym ? "sym" : "asym", c.defaults.desc_act ? "on" : "off", c.act_group_aware ? "on" : "off",
                c.static_groups ? "on" : "off", c.true_sequential ? "on" : "off", c.damp_percent, c.damp_auto_increment,
                c.mse ? "on" : "off", c.lm_head ? "on" : "off", c.format == quant::Format::kV1 ? "gptq (v1)" : "gptq_v2",
                c.dynamic.size());
  return buf;
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  app.add_option("model", a->model, "Hugging Face model directory or .gguf file to quantize")->required();
  app.add_option("--out", a->out, "Output directory for the GPTQ checkpoint")->required();
  app.add_option("--calib", a->calib, "Calibration text: plain text, JSONL, or gzipped JSONL (C4 shards); repeatable");
  app.add_option("--calib-mode", a->calib_mode, "windows: random windows of the joined text (GPTQ paper); docs: whole documents")
      ->check(CLI::IsMember({"windows", "docs"}))->capture_default_str();
  app.add_option("--calib-field", a->calib_field, "JSONL field holding the text")->capture_default_str();
  app.add_option("--n-samples", a->n_samples, "Calibration samples")->capture_default_str();
  app.add_option("--seq-len", a->seq_len, "Tokens per sample; 0 = min(2048, model context)")->capture_default_str();
  app.add_option("--seed", a->seed, "Seed for choosing calibration windows")->capture_default_str();
  app.add_option("--bits", a->bits, "Bits per weight: 2, 3, 4 or 8")->check(CLI::IsMember({2, 3, 4, 8}))->capture_default_str();
  app.add_option("--group-size", a->group_size, "Columns per quantization group; -1 = one group per row")->capture_default_str();
  app.add_flag("--desc-act", a->desc_act, "Act-order: quantize columns by decreasing Hessian diagonal (g_idx written)");
  app.add_flag("--static-groups", a->static_groups, "Compute group parameters before GPTQ updates (with --desc-act)");
  auto* sym = app.add_flag("--sym", a->sym, "Symmetric quantization (default)");
  auto* asym = app.add_flag("--asym", a->asym, "Asymmetric quantization (per-group zero point)");
  sym->excludes(asym);
  app.add_option("--damp", a->damp, "Damping as a fraction of mean(diag H)")->capture_default_str();
  app.add_option("--damp-auto-increment", a->damp_auto_increment, "Damping added after each failed Cholesky")
      ->capture_default_str();
  app.add_flag("--mse", a->mse, "MSE clipping search for group ranges (grid 100, max shrink 0.8, norm 2.4)");
  app.add_flag("--act-group-aware,!--no-act-group-aware", a->act_group_aware,
               "GAR: reorder columns by importance within and across groups, g_idx stays monotone (default on; "
               "off with --desc-act or group size -1)");
  app.add_flag("--lm-head", a->lm_head, "Quantize lm_head as well");
  app.add_flag("--no-true-sequential", a->no_true_sequential, "Calibrate every module of a layer on unquantized inputs");
  app.add_option("--dynamic", a->dynamic, "Per-module rules (GPTQModel dynamic): JSON object or a JSON file path");
  app.add_option("--method", a->method, "gptq, or rtn (round to nearest, no calibration)")
      ->check(CLI::IsMember({"gptq", "rtn"}))->capture_default_str();
  app.add_option("--format", a->format,
                 "auto: gptq_v2 when any module is asymmetric (GPTQModel refuses asymmetric v1), else gptq; "
                 "gptq (v1: zero-1 stored); gptq_v2 (zero stored)")
      ->check(CLI::IsMember({"auto", "gptq", "gptq_v2"}))->capture_default_str();
  app.add_option("--max-shard-size", a->max_shard_size, "Largest safetensors shard (e.g. 4GB, 500MB)")->capture_default_str();
  app.add_option("--write-queue", a->write_queue,
                 "Tensor bytes waiting for each background writer (checkpoint, resume journal) at most "
                 "(e.g. 1GiB); 0: the checkpoint on the quantizing thread, the journal one write at a time")
      ->capture_default_str();
  add_device_flags(app, a->device);
  app.add_option("--devices", a->devices,
                 "Quantize data-parallel on several devices, one rank each: a comma-separated list (cuda:0,cuda:1; "
                 "a device may repeat) or all (every GPU). The calibration is shared among them in whole forward "
                 "chunks, the Hessians pooled, each group's modules quantized on different ranks; rank 0 writes "
                 "(src/quant/parallel.h). Replaces --device")
      ->check([](const std::string& s) {
        if (s == "all") return std::string();
        try {
          device_list(s);
        } catch (const Error& e) {
          return std::string(e.what());
        }
        return std::string();
      });
  app.add_option("--max-device-memory", a->max_device_memory,
                 "Device memory quantizing may allocate (e.g. 15GB); default: what is free at the start");
  app.add_option("--batch-size", a->batch_size,
                 "Calibration samples per forward chunk; 0 = as many as fit in 4096 tokens. Shrunk, with a note, "
                 "when a chunk would not fit in device memory")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--overwrite", a->overwrite, "Replace DIR if it exists");
  app.add_flag("--resume", a->resume,
               "Continue an interrupted run from its last finished layer (kept in DIR.partial; same settings "
               "required); the checkpoint is the one an uninterrupted run writes. Without it a run starts over, "
               "discarding DIR.partial");
  app.add_flag("--json", a->json, "Print a machine-readable summary on stdout");
  app.add_option("--eval-text", a->eval_text, "After quantizing, compare with the base on this text (model card)");
  app.add_option("--eval-tasks", a->eval_tasks, "After quantizing, score these task files on both (model card)")
      ->delimiter(',');

  return [a] {
    quant::QuantizeConfig qc;
    qc.method = a->method == "rtn" ? quant::Method::kRtn : quant::Method::kGptq;
    qc.defaults = {.bits = a->bits, .group_size = a->group_size, .sym = !a->asym, .desc_act = a->desc_act};
    qc.static_groups = a->static_groups;
    qc.true_sequential = !a->no_true_sequential;
    qc.damp_percent = a->damp;
    qc.damp_auto_increment = a->damp_auto_increment;
    qc.mse = a->mse;
    // As GPTQModel: GAR is an alternative to desc_act, and meaningless with one group.
    qc.act_group_aware = a->act_group_aware && !a->desc_act && a->group_size != -1 && qc.method == quant::Method::kGptq;
    qc.lm_head = a->lm_head;
    if (!a->dynamic.empty()) qc.dynamic = quant::parse_dynamic(a->dynamic);
    qc.format = a->format == "auto" ? quant::default_format(qc) : quant::format_from_checkpoint(a->format);
    model::require_model_dir(a->model, qc.method == quant::Method::kGptq ? model::ModelFiles::kConfigAndTokenizer
                                                                         : model::ModelFiles::kConfig);
    quant::check_quantizable(a->model, qc);

    // Everything checkable is checked before the settings are echoed, so a mistake costs
    // one line of output.
    if (qc.method == quant::Method::kGptq && a->calib.empty()) {
      throw Error(ErrorKind::kInvalidArgument, "GPTQ needs calibration text: --calib FILE");
    }
    quant::precheck_calibration_files({a->calib.begin(), a->calib.end()});
    std::vector<std::string> eval_files = a->eval_tasks;
    if (!a->eval_text.empty()) eval_files.push_back(a->eval_text);
    for (const auto& f : eval_files) {
      if (!std::filesystem::is_regular_file(f)) throw Error(ErrorKind::kIo, "evaluation file '" + f + "' does not exist");
    }
    const model::ModelConfig mc = model::load_config(a->model);
    std::fprintf(stderr, "gptq quantize %s -> %s\n  %s\n", a->model.c_str(), a->out.c_str(), settings_line(qc).c_str());
    // Settings some loader will not take (a quantized lm_head in transformers, above all:
    // it fails silently there), one line each.
    for (const auto& l : quant::loader_support(qc)) {
      if (!l.loads) std::fprintf(stderr, "gptq: warning: %s %s\n", quant::to_string(l.loader), l.why.c_str());
    }

    quant::CalibSet calib;
    if (qc.method == quant::Method::kGptq) {
      const auto t0 = std::chrono::steady_clock::now();
      const auto tk = tok::Tokenizer::load_for_model(a->model);
      quant::CalibOptions co{.jsonl_field = a->calib_field,
                             .n_samples = a->n_samples,
                             .seq_len = a->seq_len > 0 ? a->seq_len : std::min<int64_t>(2048, mc.max_positions),
                             .mode = a->calib_mode == "docs" ? quant::CalibMode::kDocuments : quant::CalibMode::kRandomWindows,
                             .seed = a->seed};
      for (const auto& f : a->calib) co.files.emplace_back(f);
      calib = quant::load_calibration(tk, co);
      std::fprintf(stderr, "  calibration: %s (%.2f s with the tokenizer's load)\n", calib.describe().c_str(),
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }

    Progress layers("layers", mc.layers);
    std::fprintf(stderr, "  %-40s %4s %6s %12s %7s %7s\n", "module", "bits", "group", "loss", "damp", "sec");
    quant::PipelineOptions po{.config = qc,
                              .out_dir = a->out,
                              .writer = {.max_shard_bytes = parse_size(a->max_shard_size, "--max-shard-size"),
                                         .overwrite = a->overwrite,
                                         .background_bytes = a->write_queue == "0"
                                                                 ? 0
                                                                 : parse_size(a->write_queue, "--write-queue")}};
    if (a->batch_size > 0) po.batch_samples = a->batch_size;
    if (!a->max_device_memory.empty()) po.max_device_bytes = parse_size(a->max_device_memory, "--max-device-memory");
    po.on_note = [](const std::string& n) { std::fprintf(stderr, "gptq: note: %s\n", n.c_str()); };
    std::filesystem::path out = std::filesystem::path(a->out).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();  // "dir/"
    po.journal_dir = out.string() + ".partial";
    po.journal_mode = a->resume ? quant::LayerJournal::Mode::kContinue : quant::LayerJournal::Mode::kFresh;
    po.on_module = [](const quant::ModuleReport& m) {
      if (!m.quantized) {
        std::fprintf(stderr, "  %-40s skipped (dynamic rule)\n", m.name.c_str());
        return;
      }
      std::fprintf(stderr, "  %-40s %4d %6d %12.5g %7.3f %7.2f%s\n", m.name.c_str(), m.bits, m.group_size, m.loss,
                   m.damp, m.seconds, m.retries > 0 ? "  (damping raised)" : "");
    };
    // One backend per rank; rank 0's reports progress and memory.
    std::vector<std::unique_ptr<backend::Backend>> ranks;
    for (const std::string& spec : device_list(a->devices)) {
      DeviceArgs d = a->device;
      d.device = spec;
      ranks.push_back(open_backend(d, a->model));
    }
    if (ranks.empty()) ranks.push_back(open_backend(a->device, a->model));
    const std::unique_ptr<backend::Backend>& be = ranks.front();
    po.on_layer_times = [](const quant::LayerTimes& t) {
      std::fprintf(stderr, "  %s: %s\n", t.layer < 0 ? "lm_head" : ("layer " + std::to_string(t.layer)).c_str(),
                   quant::describe(t).c_str());
    };
    po.on_startup = [](const quant::StartupTimes& t) {
      std::fprintf(stderr, "  start-up: %s\n", quant::describe(t).c_str());
    };
    po.on_layer = [&layers, &be](int64_t done, int64_t, double) {
      if (be->device() == backend::Device::kCpu) return layers.update(done);
      const backend::MemoryStats m = be->memory();
      layers.update(done, "device " + std::to_string(m.device_used >> 20) + " MiB in use, peak allocated " +
                              std::to_string(m.peak_allocated >> 20) + " MiB");
    };
    std::vector<backend::Backend*> backends;
    for (const auto& b : ranks) backends.push_back(b.get());
    const quant::QuantizeResult r = quant::quantize_model_parallel(a->model, calib, backends, po);
    layers.finish();

    std::fprintf(stderr,
                 "done in %.1f s: %zu shard(s), %.2f MB, %.3f bits per quantized weight, %.3f bits per parameter "
                 "overall, peak RSS %.1f MB -> %s\n",
                 r.seconds, r.checkpoint.shards.size(), double(r.checkpoint.tensor_bytes) / 1e6, r.bpw_quantized,
                 r.bpw_total, double(r.peak_rss) / 1e6, r.checkpoint.dir.c_str());
    eval::ModelCardInfo card{.base_model = std::filesystem::path(a->model).filename().string(),
                             .settings = settings_line(qc),
                             .calibration = qc.method == quant::Method::kGptq ? calib.describe() : "none (RTN)",
                             .bits = qc.defaults.bits,
                             .group_size = qc.defaults.group_size,
                             .bpw_quantized = r.bpw_quantized,
                             .bpw_total = r.bpw_total,
                             .tensor_bytes = r.checkpoint.tensor_bytes,
                             .seconds = r.seconds,
                             .version = GPTQ_VERSION};
    if (!a->eval_text.empty() || !a->eval_tasks.empty()) {
      eval::CompareOptions co{.text = a->eval_text, .on_progress = stage_progress()};
      for (const auto& t : a->eval_tasks) co.tasks.emplace_back(t);
      card.eval = eval::compare_models(a->model, r.checkpoint.dir, co);
    }
    io::write_file_atomic(r.checkpoint.dir / "README.md", eval::model_card(card));
    nlohmann::json memory;
    if (be->device() != backend::Device::kCpu) report_memory(*be, &memory);  // the CPU's RSS is in the line above
    if (a->json) {
      nlohmann::json j = {{"out", r.checkpoint.dir.string()},     {"seconds", r.seconds},
                                {"peak_rss_bytes", r.peak_rss},         {"tensor_bytes", r.checkpoint.tensor_bytes},
                                {"shards", r.checkpoint.shards.size()}, {"bpw_quantized", r.bpw_quantized},
                                {"bpw_total", r.bpw_total},             {"quantized_params", r.quantized_params},
                                {"total_params", r.total_params},       {"modules", r.modules.size()},
                                {"ranks", ranks.size()}};
      j["startup"] = nlohmann::json(quant::to_json(r.startup));
      j["layers"] = nlohmann::json::array();
      for (const auto& t : r.layers) j["layers"].push_back(nlohmann::json(quant::to_json(t)));
      if (!memory.is_null()) j.update(memory);
      std::printf("%s\n", j.dump(1).c_str());
    }
    return 0;
  };
}

}  // namespace gptq::cli
