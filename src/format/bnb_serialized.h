// How transformers publishes a bitsandbytes-quantized model (save_pretrained of a
// load_in_4bit / load_in_8bit model, bitsandbytes' Linear4bit / Linear8bitLt state
// dicts), as read from bitsandbytes 0.50 (QuantState.as_dict(packed=True) /
// from_dict, utils.pack_dict_to_tensor) and checked against files it wrote
// (tests/fixtures/bnb, scripts/make_bnb_fixtures.py).
//
// 4-bit linear P ("model.layers.0.mlp.up_proj"), W [out, in], n = out·in, B = ceil(n / blocksize):
//   P.weight                 U8  [ceil(n/2), 1]  codes, two per byte, high nibble first
//   P.weight.absmax          F32 [B]             (double quant: U8 [B], codes into the dynamic map)
//   P.weight.quant_map       F32 [16]            the code book (NF4 or FP4 values)
//   P.weight.nested_absmax   F32 [ceil(B/256)]   double quant only: the group scales
//   P.weight.nested_quant_map F32 [256]          double quant only: the dynamic map
//   P.weight.quant_state.bitsandbytes__nf4 (or __fp4)  U8 [len]: UTF-8 JSON
//     {"quant_type", "blocksize", "dtype", "shape": [out, in]
//      (+ "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": mean absmax)}
//   P.bias                   as the model's dtype, when the layer has one
// 8-bit (LLM.int8) linear:
//   P.weight I8 [out, in] (CB), P.SCB F32 [out] (row absmax), P.weight_format U8 [] = 0 ("row").
// Modules left unquantized (lm_head by default) keep their ordinary P.weight.
// config.json carries quantization_config {"quant_method": "bitsandbytes", "load_in_4bit", ...};
// the 4-bit block size is not in it: each layer's quant_state has its own.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "core/dtype.h"
#include "format/bnb_config.h"
#include "format/bnb_packed.h"

namespace gptq::quant::bnb {

// Tensor names under P.weight for the 4-bit state ("absmax", "quant_map", ...).
inline constexpr const char* kQuantStatePrefix = "quant_state.bitsandbytes__";

// The quant_state JSON of a 4-bit layer.
struct QuantStateInfo {
  BnbType type = BnbType::kNf4;
  int64_t blocksize = 64;
  std::string dtype;  // torch dtype name of the weight before quantization: "float16", ...
  int64_t out = 0, in = 0;
  bool nested = false;
  float nested_offset = 0.0f;
};

// The JSON text bitsandbytes' pack_dict_to_tensor would hold for `p` (4-bit), whose
// weight was of dtype `source` (F32, F16 or BF16).
std::string quant_state_json(const BnbPacked& p, DType source);
// Parses and checks a quant_state blob: an object with the fields above, a known
// quant_type, a block size bitsandbytes takes (32..4096, a power of two), a 2-D shape,
// a float dtype name, and (when nested) nested_blocksize 256 and a finite offset.
// Throws kFormat naming `what` and the field.
QuantStateInfo parse_quant_state(std::span<const std::byte> blob, const std::string& what);

// "float32", "float16", "bfloat16" (torch's names, without "torch.").
const char* torch_dtype_name(DType t);

// quantization_config as transformers' BitsAndBytesConfig.to_dict() writes it.
nlohmann::ordered_json quantization_config_json(const BnbConfig& c);
// From config.json's quantization_config: nullopt unless quant_method is
// "bitsandbytes". Type from load_in_4bit / bnb_4bit_quant_type / load_in_8bit, double
// quant and threshold from their fields (the block size stays the default: the layers
// carry theirs). Throws kFormat (bad fields), kUnsupported (llm_int8_has_fp16_weight,
// quant storage other than uint8).
std::optional<BnbConfig> bnb_config_from_json(const nlohmann::ordered_json& j, const std::string& what);

}  // namespace gptq::quant::bnb
