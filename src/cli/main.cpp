// gptq: the command line. The only place where errors become messages and exit codes.
#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "core/error.h"
#include "core/omp_policy.h"

namespace {

// Every command-line mistake is one line on stderr and exit status 2, whatever CLI11's own
// code for it (105 for a value outside a set, 106 for a missing argument, 109 for an
// extra one...). The line names the command whose --help lists the flags.
int parse_failure(const CLI::App& app, const std::map<CLI::App*, gptq::cli::Runner>& runners, int argc,
                  char** argv, const CLI::ParseError& e) {
  std::string command;
  for (const auto& [sub, run] : runners) {
    if (sub->parsed()) command = sub->get_name();
  }
  std::string what = e.what();
  // CLI11 reports an unknown command (or a flag before any command) as a missing command;
  // name what was typed instead.
  if (command.empty() && argc > 1) {
    std::string names;
    for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
    }
    what = std::string(argv[1][0] == '-' ? "unknown option '" : "unknown command '") + argv[1] +
           "'; the commands are " + names;
  }
  const std::string help = command.empty() ? "gptq --help" : "gptq " + command + " --help";
  std::fprintf(stderr, "gptq: %s: %s (%s lists the options)\n", gptq::to_string(gptq::ErrorKind::kInvalidArgument),
               what.c_str(), help.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  gptq::reexec_with_passive_omp_wait(argv);
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
  add("convert", "Convert a GGUF file into a Hugging Face checkpoint, or write one quantized as bitsandbytes does (--load-in-*)",
      gptq::cli::add_convert);
  add("quantize", "Quantize a model with GPTQ (or RTN) into a standard GPTQ checkpoint", gptq::cli::add_quantize);
  add("synth", "Write a random-initialised checkpoint at a real model's shape (benchmarks)", gptq::cli::add_synth);
  add("eval", "Score multiple-choice tasks by log-likelihood (lm-eval's acc / acc_norm)", gptq::cli::add_eval);
  add("kld", "KL divergence of a quantized model from its base (llama.cpp's statistics)", gptq::cli::add_kld);
  add("compare", "Base vs quantized: size, memory, perplexity, KLD, task accuracy, speed", gptq::cli::add_compare);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version arrive here as "errors" with exit code 0; CLI11 prints them.
    if (e.get_exit_code() == 0) return app.exit(e);
    return parse_failure(app, runners, argc, argv, e);
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
