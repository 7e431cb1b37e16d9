// gptq tokenize MODEL --text STR [--json] | --decode "1 2 3"
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "core/error.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace gptq::cli {

namespace {
struct TokenizeArgs {
  std::string model;
  std::string text;
  std::string decode;
  bool json = false;
  bool no_special = false;
};
}  // namespace

Runner add_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  app.add_option("model", a->model, "Model directory holding tokenizer.json, or a .gguf file")->required();
  auto* text = app.add_option("--text", a->text, "Text to encode");
  auto* decode = app.add_option("--decode", a->decode, "Token ids to decode, separated by spaces or commas");
  text->excludes(decode);
  app.add_flag("--json", a->json, "Print machine-readable JSON");
  app.add_flag("--no-special", a->no_special, "Do not add the template's special tokens (e.g. BOS)");
  return [a, text, decode] {
    model::require_model_dir(a->model, model::ModelFiles::kTokenizer);
    const auto tk = tok::Tokenizer::load_for_model(a->model);
    if (decode->count() > 0) {
      std::string s = a->decode;
      for (char& ch : s) if (ch == ',') ch = ' ';
      std::istringstream in(s);
      std::vector<int32_t> ids;
      long long v;
      while (in >> v) ids.push_back(int32_t(v));
      if (!in.eof()) throw Error(ErrorKind::kInvalidArgument, "--decode: not a list of integers: " + a->decode);
      const std::string out = tk.decode(ids, tok::DecodeSpecial::kKeep);
      if (a->json) {
        std::printf("%s\n", nlohmann::json{{"ids", ids}, {"text", out}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      } else {
        std::printf("%s\n", out.c_str());
      }
      return 0;
    }
    if (text->count() == 0) throw Error(ErrorKind::kInvalidArgument, "give --text or --decode");
    const auto ids = tk.encode(a->text, a->no_special ? tok::SpecialTokens::kNone : tok::SpecialTokens::kAdd);
    nlohmann::json pieces = nlohmann::json::array();
    for (int32_t id : ids) pieces.push_back(tk.id_to_piece(id));
    if (a->json) {
      std::printf("%s\n", nlohmann::json{{"ids", ids}, {"pieces", pieces}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      return 0;
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      std::printf("%6d  %s\n", ids[i], pieces[i].get<std::string>().c_str());
    }
    return 0;
  };
}

}  // namespace gptq::cli
