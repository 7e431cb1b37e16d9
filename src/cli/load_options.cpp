#include "cli/load_options.h"

#include <cstdio>

#include "core/error.h"
#include "model/bnb_loader.h"

namespace gptq::cli {

void add_load_flags(CLI::App& app, LoadArgs& a) {
  // A flag whose value is optional: "--load-in-4bit" means nf4, "--load-in-4bit=fp4" picks
  // the type (a separate word would be read as the model argument).
  auto* four = app.add_flag("--load-in-4bit{nf4}", a.load_in_4bit,
                            "Quantize the linear layers at load to 4 bits as bitsandbytes does (=nf4 or =fp4; "
                            "blockwise absmax; lm_head, embedding and norms stay as stored)")
                   ->check(CLI::IsMember({"nf4", "fp4"}));
  app.add_flag("--double-quant", a.double_quant,
               "With --load-in-4bit: quantize the absmax values to 8 bits in groups of 256 (bnb_4bit_use_double_quant)");
  app.add_option("--blocksize", a.bnb.blocksize, "With --load-in-4bit: weights per absmax block (64 to 4096)")
      ->capture_default_str();
  auto* eight = app.add_flag("--load-in-8bit", a.load_in_8bit,
                             "Quantize the linear layers at load with LLM.int8 (row-wise int8 weights, int8 "
                             "activations with the outlier columns in floating point)");
  app.add_option("--llm-int8-threshold", a.bnb.int8_threshold,
                 "With --load-in-8bit: activations of magnitude at least this are outliers (0: none)")
      ->capture_default_str();
  four->excludes(eight);
}

quant::bnb::BnbConfig bnb_config(const LoadArgs& a) {
  quant::bnb::BnbConfig c = a.bnb;
  if (!a.load_in_4bit.empty()) c.type = quant::bnb::parse_type(a.load_in_4bit);
  if (a.load_in_8bit) c.type = quant::bnb::BnbType::kInt8;
  const bool four = c.type == quant::bnb::BnbType::kNf4 || c.type == quant::bnb::BnbType::kFp4;
  if (a.double_quant && !four) throw Error(ErrorKind::kInvalidArgument, "--double-quant needs --load-in-4bit");
  if (a.bnb.blocksize != quant::bnb::BnbConfig{}.blocksize && !four) {
    throw Error(ErrorKind::kInvalidArgument, "--blocksize needs --load-in-4bit");
  }
  if (a.double_quant) c.absmax = quant::bnb::AbsmaxStorage::kDoubleQuant;
  quant::bnb::validate(c);
  return c;
}

model::Model load_model(const std::string& dir, backend::Backend& b, const LoadArgs& a, nlohmann::json* json) {
  const quant::bnb::BnbConfig c = bnb_config(a);
  if (!c.enabled()) return model::Model::load(dir, b);
  model::BnbLoadStats s;
  model::Model m = model::load_bnb(dir, b, c, &s);
  auto mib = [](uint64_t v) { return double(v) / double(1 << 20); };
  std::fprintf(stderr, "load-time quantization: %s, %lld linears, %.2f MiB -> %.2f MiB (saved %.2f MiB)\n",
               quant::bnb::describe(c).c_str(), (long long)s.layers, mib(s.dense_bytes), mib(s.quantized_bytes),
               mib(s.dense_bytes - s.quantized_bytes));
  if (json != nullptr) {
    (*json)["load_quantization"] = {{"method", quant::bnb::describe(c)},
                                    {"linears", s.layers},
                                    {"weights", s.weights},
                                    {"dense_bytes", s.dense_bytes},
                                    {"quantized_bytes", s.quantized_bytes},
                                    {"weight_bytes", m.weight_bytes()}};
  }
  return m;
}

}  // namespace gptq::cli
