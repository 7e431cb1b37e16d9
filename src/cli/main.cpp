// gptq: the command line. The only place where errors become messages and exit codes.
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"gptq.cpp " GPTQ_VERSION ": quantize Hugging Face models with GPTQ and run them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", GPTQ_VERSION);
  std::map<CLI::App*, gptq::cli::Runner> runners;
  auto add = [&](const char* name, const char* help, auto adder) {
    CLI::App* sub = app.add_subcommand(name, help);
    runners[sub] = adder(*sub);
  };
  add("info", "Show a checkpoint's architecture, parameters, dtypes and tensors", gptq::cli::add_info);
  add("tokenize", "Encode text to token ids (or decode ids with --decode)", gptq::cli::add_tokenize);
  add("generate", "Generate text from a prompt", gptq::cli::add_generate);
  add("ppl", "Measure perplexity on a text file, or of each text of a JSONL set (--texts)", gptq::cli::add_ppl);
  add("convert", "Convert a GGUF file into a Hugging Face checkpoint", gptq::cli::add_convert);
  add("quantize", "Quantize a model with GPTQ (or RTN) into a standard GPTQ checkpoint", gptq::cli::add_quantize);
  add("synth", "Write a random-initialised checkpoint at a real model's shape (benchmarks)", gptq::cli::add_synth);
  add("eval", "Score multiple-choice tasks by log-likelihood (lm-eval's acc / acc_norm)", gptq::cli::add_eval);
  add("kld", "KL divergence of a quantized model from its base (llama.cpp's statistics)", gptq::cli::add_kld);
  add("compare", "Base vs quantized: size, memory, perplexity, KLD, task accuracy, speed", gptq::cli::add_compare);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
    return 2;
  } catch (const gptq::Error& e) {
    std::fprintf(stderr, "gptq: %s: %s\n", gptq::to_string(e.kind()), e.what());
    return e.kind() == gptq::ErrorKind::kInvalidArgument ? 2 : 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "gptq: out of memory\n");
    return 1;
  }
}
