// Each `gptq` sub-command registers its flags (declared once, with help and default)
// and the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace gptq::cli {

using Runner = std::function<int()>;

Runner add_info(CLI::App& app);
Runner add_tokenize(CLI::App& app);
Runner add_generate(CLI::App& app);
Runner add_ppl(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_eval(CLI::App& app);
Runner add_kld(CLI::App& app);
Runner add_compare(CLI::App& app);

// A progress line per named stage, for eval::CompareOptions::on_progress (cmd_compare.cpp).
std::function<void(const std::string&, int64_t, int64_t)> stage_progress();

}  // namespace gptq::cli
