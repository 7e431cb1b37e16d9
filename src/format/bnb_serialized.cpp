#include "format/bnb_serialized.h"

#include <cmath>

#include "core/error.h"
#include "io/json_file.h"

namespace gptq::quant::bnb {

namespace {
using ojson = nlohmann::ordered_json;

[[noreturn]] void bad(const std::string& what, const std::string& msg) { throw Error(ErrorKind::kFormat, what + ": " + msg); }
}  // namespace

const char* torch_dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "float32";
    case DType::kF16: return "float16";
    case DType::kBF16: return "bfloat16";
    default: throw Error(ErrorKind::kInvalidArgument, "bitsandbytes: weights of dtype " + std::string(dtype_name(t)) +
                                                          " cannot be quantized (F32, F16 or BF16)");
  }
}

std::string quant_state_json(const BnbPacked& p, DType source) {
  // The key order of bitsandbytes' as_dict, tensors removed.
  ojson j = {{"quant_type", type_name(p.type)},
             {"blocksize", p.blocksize},
             {"dtype", torch_dtype_name(source)},
             {"shape", {p.out_features, p.in_features}}};
  if (p.nested) {
    j["nested_blocksize"] = kNestedBlock;
    j["nested_dtype"] = "float32";
    // A double holds the float exactly; nlohmann prints it so that it reads back as itself.
    j["nested_offset"] = double(p.nested->offset);
  }
  return j.dump();
}

QuantStateInfo parse_quant_state(std::span<const std::byte> blob, const std::string& what) {
  const std::string text(reinterpret_cast<const char*>(blob.data()), blob.size());
  const ojson j = io::parse_ordered_json(text, what);
  if (!j.is_object()) bad(what, "expected a JSON object");
  QuantStateInfo q;
  const auto type = io::json_get<std::string>(j, "quant_type", what);
  if (type != "nf4" && type != "fp4") bad(what, "quant_type \"" + type + "\": expected nf4 or fp4");
  q.type = parse_type(type);
  q.blocksize = io::json_get<int64_t>(j, "blocksize", what);
  try {
    validate(BnbConfig{.type = q.type, .blocksize = q.blocksize});
  } catch (const Error& e) {
    bad(what, e.what());
  }
  q.dtype = io::json_get<std::string>(j, "dtype", what);
  if (q.dtype != "float32" && q.dtype != "float16" && q.dtype != "bfloat16") {
    bad(what, "dtype \"" + q.dtype + "\": expected float32, float16 or bfloat16");
  }
  const auto shape = io::json_get<std::vector<int64_t>>(j, "shape", what);
  if (shape.size() != 2 || shape[0] <= 0 || shape[1] <= 0) bad(what, "shape: expected [out_features, in_features]");
  q.out = shape[0];
  q.in = shape[1];
  q.nested = j.contains("nested_blocksize") || j.contains("nested_offset") || j.contains("nested_dtype");
  if (q.nested) {
    const auto nb = io::json_get<int64_t>(j, "nested_blocksize", what);
    if (nb != kNestedBlock) bad(what, "nested_blocksize " + std::to_string(nb) + ": expected 256");
    const auto nd = io::json_get<std::string>(j, "nested_dtype", what);
    if (nd != "float32") bad(what, "nested_dtype \"" + nd + "\": expected float32");
    const auto offset = io::json_get<double>(j, "nested_offset", what);
    if (!std::isfinite(offset) || std::fabs(offset) > 3.4e38) bad(what, "nested_offset is not a finite float");
    q.nested_offset = float(offset);
  }
  return q;
}

ojson quantization_config_json(const BnbConfig& c) {
  const bool four = c.type == BnbType::kNf4 || c.type == BnbType::kFp4;
  // transformers' BitsAndBytesConfig.to_dict(), field for field; the compute dtype is
  // fp32, what gptq.cpp computes in.
  return {{"_load_in_4bit", four},
          {"_load_in_8bit", !four},
          {"bnb_4bit_compute_dtype", "float32"},
          {"bnb_4bit_quant_storage", "uint8"},
          {"bnb_4bit_quant_type", c.type == BnbType::kNf4 ? "nf4" : "fp4"},  // fp4: transformers' default
          {"bnb_4bit_use_double_quant", c.absmax == AbsmaxStorage::kDoubleQuant},
          {"llm_int8_enable_fp32_cpu_offload", false},
          {"llm_int8_has_fp16_weight", false},
          {"llm_int8_skip_modules", nullptr},
          {"llm_int8_threshold", c.int8_threshold},
          {"load_in_4bit", four},
          {"load_in_8bit", !four},
          {"quant_method", "bitsandbytes"}};
}

std::optional<BnbConfig> bnb_config_from_json(const ojson& j, const std::string& what) {
  if (!j.is_object()) bad(what, "expected a JSON object");
  if (io::json_get_or<std::string>(j, "quant_method", "", what) != "bitsandbytes") return std::nullopt;
  const bool four = io::json_get_or<bool>(j, "load_in_4bit", false, what);
  const bool eight = io::json_get_or<bool>(j, "load_in_8bit", false, what);
  if (four == eight) bad(what, "expected exactly one of load_in_4bit and load_in_8bit to be true");
  BnbConfig c;
  if (four) {
    const auto type = io::json_get_or<std::string>(j, "bnb_4bit_quant_type", "fp4", what);
    if (type != "nf4" && type != "fp4") bad(what, "bnb_4bit_quant_type \"" + type + "\": expected nf4 or fp4");
    c.type = parse_type(type);
    if (io::json_get_or<bool>(j, "bnb_4bit_use_double_quant", false, what)) c.absmax = AbsmaxStorage::kDoubleQuant;
    const auto storage = io::json_get_or<std::string>(j, "bnb_4bit_quant_storage", "uint8", what);
    if (storage != "uint8") {
      throw Error(ErrorKind::kUnsupported, what + ": bnb_4bit_quant_storage \"" + storage + "\" (only uint8 is read)");
    }
  } else {
    c.type = BnbType::kInt8;
    if (io::json_get_or<bool>(j, "llm_int8_has_fp16_weight", false, what)) {
      throw Error(ErrorKind::kUnsupported, what + ": llm_int8_has_fp16_weight (the weights are not int8)");
    }
    const auto t = io::json_get_or<double>(j, "llm_int8_threshold", 6.0, what);
    if (!(t >= 0.0) || !std::isfinite(t)) bad(what, "llm_int8_threshold must be a finite number >= 0");
    c.int8_threshold = float(t);
  }
  return c;
}

}  // namespace gptq::quant::bnb
