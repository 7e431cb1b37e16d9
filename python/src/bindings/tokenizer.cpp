// gptq::tok::Tokenizer as _gptqcpp.Tokenizer.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "native.h"
#include "tokenizer/tokenizer.h"

namespace gptq::py {

void bind_tokenizer(nb::module_& m) {
  nb::class_<tok::Tokenizer>(m, "Tokenizer")
      .def_static(
          "load_for_model",
          [](const std::string& model) { return without_gil([&] { return tok::Tokenizer::load_for_model(model); }); },
          nb::arg("model"), "MODEL/tokenizer.json, or the tokenizer a .gguf file describes")
      .def(
          "encode",
          [](const tok::Tokenizer& t, const std::string& text, bool add_special) {
            return without_gil([&] {
              return t.encode(text, add_special ? tok::SpecialTokens::kAdd : tok::SpecialTokens::kNone);
            });
          },
          nb::arg("text"), nb::arg("add_special_tokens") = true)
      .def(
          "decode",
          [](const tok::Tokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
            return t.decode(ids, skip_special ? tok::DecodeSpecial::kSkip : tok::DecodeSpecial::kKeep);
          },
          nb::arg("ids"), nb::arg("skip_special_tokens"))
      .def("id_to_piece", &tok::Tokenizer::id_to_piece)
      .def("piece_to_id", &tok::Tokenizer::piece_to_id)
      .def("is_special", &tok::Tokenizer::is_special)
      .def_prop_ro("vocab_size", &tok::Tokenizer::vocab_size);
}

}  // namespace gptq::py
