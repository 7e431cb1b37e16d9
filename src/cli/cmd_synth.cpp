// gptq synth --shape NAME [--layers N] [--dtype bf16] [--gptq BITS --group-size G] --out DIR
#include <cstdio>

#include "cli/commands.h"
#include "core/error.h"
#include "model/synthetic.h"

namespace gptq::cli {

namespace {
struct SynthArgs {
  model::SynthOptions o;
  std::string out;
  std::string dtype = "bf16";
};
}  // namespace

Runner add_synth(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  std::vector<std::string> names;
  for (const auto& s : model::synth_shapes()) names.push_back(s.name);
  app.add_option("--shape", a->o.shape, "Published architecture to imitate")->required()->check(CLI::IsMember(names));
  app.add_option("--layers", a->o.layers, "Decoder layers; 0 = the shape's own")->capture_default_str();
  app.add_option("--dtype", a->dtype, "Dense tensor dtype")->check(CLI::IsMember({"f16", "bf16", "f32"}))->capture_default_str();
  app.add_option("--gptq", a->o.gptq_bits, "Write the linears GPTQ-packed at these bits (random codes); 0 = dense")
      ->check(CLI::IsMember({0, 2, 3, 4, 8}))
      ->capture_default_str();
  app.add_option("--group-size", a->o.group_size, "GPTQ group size (-1: one group)")->capture_default_str();
  app.add_option("--seed", a->o.seed, "Random seed")->capture_default_str();
  app.add_option("--out", a->out, "Output directory")->required();
  app.add_flag("--overwrite", a->o.overwrite, "Replace an existing output directory");
  return [a] {
    a->o.out = a->out;
    a->o.dtype = a->dtype == "f16" ? DType::kF16 : a->dtype == "f32" ? DType::kF32 : DType::kBF16;
    const uint64_t bytes = model::write_synthetic(a->o);
    std::printf("wrote %s: %s%s, %.2f GB of tensors\n", a->out.c_str(), a->o.shape.c_str(),
                a->o.gptq_bits ? (", GPTQ " + std::to_string(a->o.gptq_bits) + "-bit g" + std::to_string(a->o.group_size)).c_str()
                               : "",
                double(bytes) / 1e9);
    return 0;
  };
}

}  // namespace gptq::cli
