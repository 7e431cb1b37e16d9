// gptq convert MODEL.gguf --out DIR [--dtype f16|bf16|f32] [--overwrite] [--json]
// gptq convert MODEL --out DIR (--load-in-4bit[=fp4] [--double-quant] [--blocksize N] | --load-in-8bit)
//   MODEL (a dense directory or .gguf) written in transformers' serialized bitsandbytes
//   layout, the decoder-layer linears quantized as the same flags quantize them at load.
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/load_options.h"
#include "core/error.h"
#include "io/gguf.h"
#include "model/bnb_checkpoint.h"
#include "model/config.h"
#include "model/gguf_convert.h"

namespace gptq::cli {

namespace {
struct ConvertArgs {
  std::string model;
  std::string out;
  DType dtype = DType::kF16;
  bool overwrite = false;
  bool json = false;
  LoadArgs load;
};

int convert_bnb(const ConvertArgs& a, const quant::bnb::BnbConfig& c) {
  std::fprintf(stderr, "gptq convert %s -> %s (%s, transformers' bitsandbytes layout)\n", a.model.c_str(),
               a.out.c_str(), quant::bnb::describe(c).c_str());
  model::BnbLoadStats st;
  const io::CheckpointSummary s = model::write_bnb_checkpoint(a.model, a.out, c, {.overwrite = a.overwrite}, &st);
  auto mib = [](uint64_t v) { return double(v) / double(1 << 20); };
  std::fprintf(stderr, "done: %lld linears, %.2f MiB -> %.2f MiB; %zu tensors, %.2f MB -> %s\n", (long long)st.layers,
               mib(st.dense_bytes), mib(st.quantized_bytes), s.tensor_count, double(s.tensor_bytes) / 1e6,
               s.dir.c_str());
  if (a.json) {
    std::printf("%s\n", nlohmann::json{{"out", s.dir.string()},
                                       {"tensors", s.tensor_count},
                                       {"tensor_bytes", s.tensor_bytes},
                                       {"load_quantization", {{"method", quant::bnb::describe(c)},
                                                              {"linears", st.layers},
                                                              {"weights", st.weights},
                                                              {"dense_bytes", st.dense_bytes},
                                                              {"quantized_bytes", st.quantized_bytes}}}}
                            .dump(1)
                            .c_str());
  }
  return 0;
}
}  // namespace

Runner add_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  app.add_option("model", a->model, "GGUF file to convert (or, with --load-in-*, a dense checkpoint directory)")
      ->required();
  app.add_option("--out", a->out, "Output Hugging Face checkpoint directory")->required();
  const std::map<std::string, DType> dtypes{{"f16", DType::kF16}, {"bf16", DType::kBF16}, {"f32", DType::kF32}};
  auto* dtype = app.add_option("--dtype", a->dtype, "Element type of the written weights (GGUF without --load-in-*)")
                    ->transform(CLI::CheckedTransformer(dtypes, CLI::ignore_case))
                    ->default_str("f16");
  app.add_flag("--overwrite", a->overwrite, "Replace an existing output directory");
  app.add_flag("--json", a->json, "Print a machine-readable summary");
  add_load_flags(app, a->load);
  return [a, dtype] {
    const quant::bnb::BnbConfig bnb = bnb_config(a->load);
    if (bnb.enabled()) {
      // The tensors left unquantized are copied as stored (a GGUF's as F16).
      if (dtype->count() > 0) throw Error(ErrorKind::kInvalidArgument, "--dtype cannot be combined with --load-in-*");
      model::require_model_dir(a->model, model::ModelFiles::kConfig);
      return convert_bnb(*a, bnb);
    }
    if (!io::is_gguf_path(a->model)) {
      throw Error(ErrorKind::kInvalidArgument, "convert reads a .gguf file (or a dense checkpoint with --load-in-4bit / "
                                               "--load-in-8bit); '" + a->model + "' is not one");
    }
    model::require_model_dir(a->model, model::ModelFiles::kConfig);  // before the settings are echoed
    std::fprintf(stderr, "gptq convert %s -> %s (%s)\n", a->model.c_str(), a->out.c_str(),
                 std::string(dtype_name(a->dtype)).c_str());
    const io::CheckpointSummary s =
        model::convert_gguf(a->model, a->out, {.dtype = a->dtype, .writer = {.overwrite = a->overwrite}});
    std::fprintf(stderr, "done: %zu tensors, %.2f MB -> %s\n", s.tensor_count, double(s.tensor_bytes) / 1e6,
                 s.dir.c_str());
    if (a->json) {
      std::printf("%s\n", nlohmann::json{{"out", s.dir.string()},
                                         {"tensors", s.tensor_count},
                                         {"tensor_bytes", s.tensor_bytes},
                                         {"dtype", dtype_name(a->dtype)}}
                              .dump(1)
                              .c_str());
    }
    return 0;
  };
}

}  // namespace gptq::cli
