// gptq convert MODEL.gguf --out DIR [--dtype f16|bf16|f32] [--overwrite] [--json]
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "io/gguf.h"
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
};
}  // namespace

Runner add_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  app.add_option("model", a->model, "GGUF file to convert")->required();
  app.add_option("--out", a->out, "Output Hugging Face checkpoint directory")->required();
  const std::map<std::string, DType> dtypes{{"f16", DType::kF16}, {"bf16", DType::kBF16}, {"f32", DType::kF32}};
  app.add_option("--dtype", a->dtype, "Element type of the written weights")
      ->transform(CLI::CheckedTransformer(dtypes, CLI::ignore_case))
      ->default_str("f16");
  app.add_flag("--overwrite", a->overwrite, "Replace an existing output directory");
  app.add_flag("--json", a->json, "Print a machine-readable summary");
  return [a] {
    if (!io::is_gguf_path(a->model)) {
      throw Error(ErrorKind::kInvalidArgument, "convert reads a .gguf file; '" + a->model + "' is not one");
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
