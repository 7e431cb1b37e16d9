#include "format/loader_support.h"

#include <cctype>
#include <charconv>
#include <string_view>

namespace gptq::quant {

namespace {

// "gptqmodel:7.6.0" names GPTQModel at version >= 0.9.0 (numeric components compared in
// order, as packaging.version does for plain releases; "0.9.0.dev1" counts as 0.9.0).
bool by_gptqmodel_0_9_or_later(const std::vector<std::string>& quantizers) {
  for (const std::string& q : quantizers) {
    const auto colon = q.find(':');
    if (colon == std::string::npos) continue;
    std::string tool = q.substr(0, colon);
    for (char& ch : tool) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (tool != "gptqmodel") continue;
    const std::string_view v = std::string_view(q).substr(colon + 1);
    int parts[3] = {0, 0, 0};
    const char* p = v.data();
    const char* end = v.data() + v.size();
    for (int& part : parts) {
      const auto r = std::from_chars(p, end, part);
      if (r.ec != std::errc()) break;
      p = r.ptr;
      if (p == end || *p != '.') break;
      ++p;
    }
    return parts[0] > 0 || (parts[0] == 0 && parts[1] >= 9);
  }
  return false;
}

// vLLM routes every quant_method "gptq" checkpoint to its AutoGPTQ method since PR
// #38288 (2026), whose Marlin kernels take (bits, sym) in {(4, true), (8, true)} and group
// sizes -1, 32, 64, 128 (MARLIN_SUPPORTED_GROUP_SIZES); the ExLlama-based `gptq` method
// that ran 2/3-bit and asymmetric weights (and, from PR #26092, read gptq_v2 zeros) was
// removed. Marlin never reads qzeros of symmetric weights, so v1 and v2 load alike.
std::string vllm_refusal(const QuantizeConfig& c) {
  for (const ModuleSettings& s : c.all_settings()) {
    if ((s.bits != 4 && s.bits != 8) || !s.sym) {
      std::string why = "takes only 4- and 8-bit symmetric GPTQ since PR #38288 (2026), not ";
      why += std::to_string(s.bits);
      why += s.sym ? "-bit sym" : "-bit asym";
      why += "; older releases ran it through their gptq kernel (gptq_v2 zero points read correctly from "
             "PR #26092, Oct 2025)";
      return why;
    }
    if (s.group_size != -1 && s.group_size != 32 && s.group_size != 64 && s.group_size != 128) {
      return "Marlin takes group sizes -1, 32, 64 and 128, not " + std::to_string(s.group_size);
    }
  }
  return "";
}

}  // namespace

const char* to_string(Loader loader) {
  switch (loader) {
    case Loader::kGptqCpp: return "gptq.cpp";
    case Loader::kGptqModel: return "GPTQModel";
    case Loader::kTransformers: return "transformers";
    case Loader::kVllm: return "vLLM";
  }
  return "?";
}

std::vector<LoaderVerdict> loader_support(const QuantizeConfig& c) {
  std::vector<LoaderVerdict> v;
  v.push_back({.loader = Loader::kGptqCpp});

  // GPTQModel 7.6 (models/loader.py): format gptq with sym=False raises "Loading of a
  // sym=False model with format=FORMAT.GPTQ is only supported if produced by gptqmodel
  // version >= 0.9.0", judged on the top-level sym and meta.quantizer (measured).
  LoaderVerdict gm{.loader = Loader::kGptqModel};
  if (c.format == Format::kV1 && !c.defaults.sym && !by_gptqmodel_0_9_or_later(c.quantizers)) {
    gm.loads = false;
    gm.why = "refuses asymmetric (sym=false) checkpoints in format gptq (v1) unless meta.quantizer names "
             "gptqmodel >= 0.9.0; write gptq_v2 (--format gptq_v2, the default for --asym)";
  }
  v.push_back(gm);

  // transformers 5.17 + optimum 2.3: optimum converts only the decoder blocks to
  // quantized linears; a quantized lm_head's tensors are left unused and the head is
  // randomly initialised, with no error (measured: perplexity ~5e5). v1 and v2 both load
  // (optimum hands gptq_v2 to GPTQModel's kernels as is; measured).
  LoaderVerdict hf{.loader = Loader::kTransformers};
  if (c.lm_head) {
    hf.loads = false;
    hf.why = "cannot load a quantized lm_head (lm_head: true): it silently keeps a randomly initialised head "
             "(measured perplexity ~5e5); GPTQModel and gptq.cpp load it";
  }
  v.push_back(hf);

  LoaderVerdict vllm{.loader = Loader::kVllm};
  vllm.why = vllm_refusal(c);
  vllm.loads = vllm.why.empty();
  v.push_back(vllm);
  return v;
}

}  // namespace gptq::quant
