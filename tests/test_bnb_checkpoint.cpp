// transformers' serialized bitsandbytes checkpoints (model/bnb_checkpoint.h):
//  - files written by bitsandbytes itself (tests/fixtures/bnb/*, scripts/make_bnb_fixtures.py)
//    load as the layers our load-time quantization makes of the same weights, and compute
//    the logits transformers computes from them;
//  - our writer reproduces bitsandbytes' files tensor for tensor, and writer -> reader
//    gives back exactly the layers of load-time quantization;
//  - hostile files fail with errors naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "backend/backend.h"
#include "backend/cpu/bnb_linear.h"
#include "format/bnb_packed.h"
#include "format/bnb_serialized.h"
#include "io/checkpoint.h"
#include "io/safetensors_writer.h"
#include "model/bnb_checkpoint.h"
#include "model/model.h"
#include "reference_tolerance.h"
#include "temp_dir.h"
#include "test_paths.h"
#include "test_util.h"

namespace gptq {
namespace {

namespace fs = std::filesystem;
using quant::bnb::AbsmaxStorage;
using quant::bnb::BnbConfig;
using quant::bnb::BnbPacked;
using quant::bnb::BnbType;

struct Variant {
  std::string dir;     // under tests/fixtures/bnb
  std::string source;  // under tests/fixtures/arch
  BnbConfig config;
};

std::vector<Variant> variants() {
  return {{"llama-bias-untied-nf4", "llama-bias-untied", {.type = BnbType::kNf4}},
          {"llama-bias-untied-nf4-dq", "llama-bias-untied", {.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant}},
          {"llama-bias-untied-fp4", "llama-bias-untied", {.type = BnbType::kFp4}},
          {"llama-bias-untied-int8", "llama-bias-untied", {.type = BnbType::kInt8}},
          {"qwen2-bias-nf4-dq", "qwen2-bias", {.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant}}};
}

fs::path bnb_fixture(const std::string& d) { return test::fixtures_dir() / "bnb" / d; }
fs::path arch_fixture(const std::string& d) { return test::fixtures_dir() / "arch" / d; }

const BnbPacked& packed_of(const backend::Linear& l) {
  const auto* b = dynamic_cast<const backend::cpu::BnbLinear*>(&l);
  if (b == nullptr) throw Error(ErrorKind::kInternal, "not a bitsandbytes layer: " + l.describe());
  return b->packed();
}

// Calls f(module name, layer index, slot) for every decoder-layer linear.
template <class F>
void for_each_linear(const model::ModelConfig& c, F&& f) {
  for (int64_t l = 0; l < c.layers; ++l) {
    for (model::Slot s : model::kAllSlots) f(model::module_name(l, s), l, s);
  }
}

// What load-time quantization makes of the source's linears, by module.
std::map<std::string, BnbPacked> quantized_source(const fs::path& src, const BnbConfig& c) {
  const io::Checkpoint ckpt(src);
  const model::ModelConfig mc = model::load_config(src);
  std::map<std::string, BnbPacked> out;
  for_each_linear(mc, [&](const std::string& name, int64_t, model::Slot s) {
    const auto [n, k] = model::slot_shape(mc, s);
    out[name] = quant::bnb::quantize(io::to_f32(ckpt.get(name + ".weight"), {n, k}, name), n, k, c);
  });
  return out;
}

// Packed 4-bit codes equal, except that FP4's two zeros (code 0, +0, and code 8, -0)
// count as one: for a weight that rounds to zero from below, bitsandbytes' CUDA kernel
// sets the sign bit (code 8, as quantize_4bit here does) and its CPU fallback picks
// either zero by argsort order (the fixtures hold 0s). Both decode to 0.
bool same_codes(const std::string& a, const std::string& b, BnbType t) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    for (int shift : {4, 0}) {
      uint8_t x = uint8_t(a[i]) >> shift & 0xF, y = uint8_t(b[i]) >> shift & 0xF;
      if (t == BnbType::kFp4 && (x & 7) == 0 && (y & 7) == 0) x = y = 0;
      if (x != y) return false;
    }
  }
  return true;
}
bool same_codes(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b, BnbType t) {
  return same_codes(std::string(a.begin(), a.end()), std::string(b.begin(), b.end()), t);
}

// Int8 codes that differ by at most one step, in at most 1% of the weights: bitsandbytes
// on the CPU scales by torch's reciprocal(absmax) * 127, we by 127 / absmax, an ulp
// apart, which moves a quotient lying within that ulp of a half step.
void expect_int8_codes_close(const std::string& a, const std::string& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  std::size_t off = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int d = std::abs(int(int8_t(a[i])) - int(int8_t(b[i])));
    EXPECT_LE(d, 1) << what << " weight " << i;
    off += d;
  }
  EXPECT_LE(off * 100, a.size()) << what << ": " << off << " codes differ";
}

class WrittenByBitsandbytes : public ::testing::TestWithParam<Variant> {};

TEST_P(WrittenByBitsandbytes, LoadsAsTheLayersOfLoadTimeQuantization) {
  const Variant& v = GetParam();
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(bnb_fixture(v.dir), *be);
  const auto expected = quantized_source(arch_fixture(v.source), v.config);
  int64_t absmax_codes = 0, absmax_codes_off_by_one = 0;
  for_each_linear(m.config(), [&](const std::string& name, int64_t l, model::Slot s) {
    const BnbPacked& got = packed_of(m.layers()[std::size_t(l)].linear(s));
    const BnbPacked& want = expected.at(name);
    ASSERT_EQ(got.type, want.type) << name;
    ASSERT_EQ(got.blocksize, want.blocksize) << name;
    // The same nearest-code rule on the same fp32 quotients: every 4-bit code and every
    // fp32 absmax (or int8 row scale) bit for bit; int8 codes up to a tie.
    if (got.type == BnbType::kInt8) {
      expect_int8_codes_close(std::string(got.data.begin(), got.data.end()), std::string(want.data.begin(), want.data.end()),
                              name);
    } else {
      EXPECT_TRUE(same_codes(got.data, want.data, got.type)) << name;
    }
    EXPECT_EQ(got.absmax, want.absmax) << name;
    ASSERT_EQ(got.nested.has_value(), want.nested.has_value()) << name;
    if (!got.nested) return;
    // Double quantization: bitsandbytes' mean (torch's pairwise fp32 sum) and its
    // torch.linspace map differ from ours in last bits, so a code can land on the
    // neighbouring entry where (absmax - offset) / scale sits within an ulp of a
    // midpoint; scales are maxima of the same differences.
    EXPECT_NEAR(got.nested->offset, want.nested->offset, 4e-7 * want.nested->offset) << name;
    ASSERT_EQ(got.nested->scales.size(), want.nested->scales.size()) << name;
    for (std::size_t g = 0; g < got.nested->scales.size(); ++g) {
      EXPECT_NEAR(got.nested->scales[g], want.nested->scales[g], 1e-6 * want.nested->scales[g]) << name << " group " << g;
    }
    for (std::size_t b = 0; b < got.nested->codes.size(); ++b) {
      const int d = std::abs(int(got.nested->codes[b]) - int(want.nested->codes[b]));
      EXPECT_LE(d, 1) << name << " block " << b;
      absmax_codes += 1;
      absmax_codes_off_by_one += d;
    }
  });
  // Ties within an ulp are rare: at most 1% of the absmax codes.
  EXPECT_LE(absmax_codes_off_by_one * 100, absmax_codes) << absmax_codes_off_by_one << " of " << absmax_codes;
}

TEST_P(WrittenByBitsandbytes, LogitsMatchTransformers) {
  const Variant& v = GetParam();
  if (v.config.type == BnbType::kInt8) {
    // Its layers are checked bit for bit above. Its logits are not comparable to a
    // rounding bound: bitsandbytes casts each linear's input to fp16 before the int8
    // rounding (we round the fp32 input), which moves about one activation code in
    // twenty by a step, as much noise as the activation rounding itself.
    GTEST_SKIP() << "LLM.int8 logits: bitsandbytes rounds activations from fp16, gptq.cpp from fp32";
  }
  const auto ref = test::load_json(bnb_fixture(v.dir) / "reference.json");
  auto be = backend::make_cpu_backend();
  auto m = model::Model::load(bnb_fixture(v.dir), *be);
  const auto& c = m.config();
  const int64_t widest = std::max({c.hidden, c.intermediate, c.heads * c.head_dim});
  for (const auto& seq : ref["sequences"]) {
    const auto ids = seq["ids"].get<std::vector<int32_t>>();
    auto cache = m.new_cache(int64_t(ids.size()));
    std::vector<float> logits;
    m.forward(ids, cache, model::Logits::kAll, logits);
    for (std::size_t t = 0; t < ids.size(); ++t) {
      const auto row = seq["logits"][t].get<std::vector<float>>();
      // Both sides multiply by the same dequantized fp32 weights, so only the summation
      // order differs (reference_tolerance.h); plus the reference's 7 significant digits.
      const double tol = test::logit_tolerance(c.layers, widest, row);
      for (std::size_t j = 0; j < row.size(); ++j) {
        ASSERT_NEAR(logits[t * row.size() + j], row[j], tol + 1e-6 * std::fabs(row[j])) << "pos " << t << " id " << j;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, WrittenByBitsandbytes, ::testing::ValuesIn(variants()),
                         [](const auto& info) {
                           std::string n = info.param.dir;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// Tensor name -> (dtype, shape, bytes) of a checkpoint's single safetensors file.
struct Stored {
  DType dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
std::map<std::string, Stored> stored_tensors(const fs::path& dir) {
  const io::Checkpoint ckpt(dir);
  std::map<std::string, Stored> out;
  for (const auto& name : ckpt.names()) {
    const auto& t = ckpt.get(name);
    out[name] = {t.dtype, t.shape, std::string(reinterpret_cast<const char*>(t.data.data()), t.data.size())};
  }
  return out;
}

TEST(BnbWriter, WritesWhatBitsandbytesWrites) {
  for (const Variant& v : variants()) {
    // Double quant's absmax codes may differ by ties (above); its sources are all fp32 or
    // the fixture was saved from fp32 (qwen2's fp16 source), so the others compare bytes.
    if (v.config.absmax == AbsmaxStorage::kDoubleQuant) continue;
    test::TempDir d;
    const fs::path out = d.path() / "out";
    model::write_bnb_checkpoint(arch_fixture(v.source), out, v.config);
    auto ours = stored_tensors(out);
    const auto theirs = stored_tensors(bnb_fixture(v.dir));
    ASSERT_EQ(ours.size(), theirs.size()) << v.dir;
    for (const auto& [name, t] : theirs) {
      ASSERT_TRUE(ours.contains(name)) << v.dir << ": we do not write " << name;
      const Stored& o = ours.at(name);
      if (name.find(".quant_state.") != std::string::npos) {
        // JSON: the same fields and values; Python's spacing is not ours.
        EXPECT_EQ(nlohmann::json::parse(o.bytes), nlohmann::json::parse(t.bytes)) << name;
        continue;
      }
      EXPECT_EQ(o.dtype, t.dtype) << name;
      EXPECT_EQ(o.shape, t.shape) << name;
      if (name.ends_with(".quant_map")) {
        // Values equal; FP4's entry 8 is -0 here, +0 in bitsandbytes' table.
        std::vector<float> a(16), b(16);
        std::memcpy(a.data(), o.bytes.data(), 64);
        std::memcpy(b.data(), t.bytes.data(), 64);
        EXPECT_EQ(a, b) << name;
      } else if (t.dtype == DType::kI8) {
        expect_int8_codes_close(o.bytes, t.bytes, name);
      } else if (t.dtype == DType::kU8 && name.ends_with(".weight")) {
        EXPECT_TRUE(same_codes(o.bytes, t.bytes, v.config.type)) << v.dir << ": " << name << " differs";
      } else {
        EXPECT_TRUE(o.bytes == t.bytes) << v.dir << ": " << name << " differs";
      }
    }
    // quantization_config: what transformers wrote, field for field.
    const auto qc = test::load_json(out / "config.json")["quantization_config"];
    auto want = test::load_json(bnb_fixture(v.dir) / "config.json")["quantization_config"];
    EXPECT_EQ(qc, want) << v.dir;
  }
}

TEST(BnbWriter, RoundTripGivesTheLayersOfLoadTimeQuantization) {
  const std::vector<BnbConfig> configs = {{.type = BnbType::kNf4, .absmax = AbsmaxStorage::kDoubleQuant},
                                          {.type = BnbType::kFp4, .blocksize = 128},
                                          {.type = BnbType::kInt8, .int8_threshold = 4.0f}};
  auto be = backend::make_cpu_backend();
  for (const BnbConfig& c : configs) {
    test::TempDir d;
    const fs::path out = d.path() / "out";
    model::BnbLoadStats s;
    model::write_bnb_checkpoint(test::stories15m_dir(), out, c, {}, &s);
    EXPECT_EQ(s.layers, 42);
    auto loaded = model::Model::load(out, *be);
    auto at_load = model::load_bnb(test::stories15m_dir(), *be, c);
    for_each_linear(loaded.config(), [&](const std::string& name, int64_t l, model::Slot sl) {
      const BnbPacked& a = packed_of(loaded.layers()[std::size_t(l)].linear(sl));
      const BnbPacked& b = packed_of(at_load.layers()[std::size_t(l)].linear(sl));
      EXPECT_EQ(a.type, b.type) << name;
      EXPECT_EQ(a.blocksize, b.blocksize) << name;
      EXPECT_EQ(a.threshold, b.threshold) << name;
      EXPECT_EQ(a.data, b.data) << name;
      EXPECT_EQ(a.absmax, b.absmax) << name;
      ASSERT_EQ(a.nested.has_value(), b.nested.has_value()) << name;
      if (a.nested) {
        EXPECT_EQ(a.nested->codes, b.nested->codes) << name;
        EXPECT_EQ(a.nested->scales, b.nested->scales) << name;
        EXPECT_EQ(std::bit_cast<uint32_t>(a.nested->offset), std::bit_cast<uint32_t>(b.nested->offset)) << name;
        EXPECT_EQ(a.nested->map, b.nested->map) << name;
      }
    });
    // The written copy of everything else is the source's: same logits, bit for bit.
    auto c1 = loaded.new_cache(8), c2 = at_load.new_cache(8);
    std::vector<float> l1, l2;
    const std::vector<int32_t> ids = {1, 9038, 2501, 263, 931};
    loaded.forward(ids, c1, model::Logits::kAll, l1);
    at_load.forward(ids, c2, model::Logits::kAll, l2);
    EXPECT_EQ(l1, l2) << quant::bnb::describe(c);
  }
}

TEST(BnbWriter, RefusesAQuantizedSourceAndLoadFlagsOnAQuantizedCheckpoint) {
  test::TempDir d;
  test::expect_error([&] { model::write_bnb_checkpoint(bnb_fixture("llama-bias-untied-nf4"), d.path() / "o",
                                                       {.type = BnbType::kNf4}); },
                     "already quantized", ErrorKind::kInvalidArgument);
  auto be = backend::make_cpu_backend();
  test::expect_error([&] { model::load_bnb(bnb_fixture("llama-bias-untied-nf4"), *be, {.type = BnbType::kNf4}); },
                     "already quantized (bitsandbytes)", ErrorKind::kInvalidArgument);
}

// A copy of a fixture with one tensor replaced (or removed, when `bytes` is empty and
// dtype is nullopt), for the hostile-input cases.
class Hostile : public ::testing::Test {
 protected:
  void write(const std::string& fixture, const std::string& name, std::optional<Stored> replacement) {
    auto t = stored_tensors(bnb_fixture(fixture));
    if (replacement) {
      t[name] = *replacement;
    } else {
      t.erase(name);
    }
    std::vector<io::SafetensorsTensor> out;
    for (const auto& [n, s] : t) {
      out.push_back({n, s.dtype, s.shape, std::as_bytes(std::span(s.bytes.data(), s.bytes.size()))});
    }
    io::write_safetensors(dir_.path() / "model.safetensors", out);
    fs::copy_file(bnb_fixture(fixture) / "config.json", dir_.path() / "config.json", fs::copy_options::overwrite_existing);
  }
  void expect_load_error(const std::string& fragment) {
    auto be = backend::make_cpu_backend();
    test::expect_error([&] { model::Model::load(dir_.path(), *be); }, fragment, ErrorKind::kFormat);
  }
  static std::string floats(std::vector<float> v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  }
  test::TempDir dir_;
};

const std::string kQ = "model.layers.1.self_attn.q_proj";  // [48, 48]: 2304 weights, 36 blocks of 64

TEST_F(Hostile, MissingOrDuplicatedQuantState) {
  write("llama-bias-untied-nf4", kQ + ".weight.quant_state.bitsandbytes__nf4", std::nullopt);
  expect_load_error("missing tensor \"" + kQ + ".weight.quant_state.bitsandbytes__nf4\" (or fp4)");
  const std::string js = R"({"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [48, 48]})";
  write("llama-bias-untied-nf4", kQ + ".weight.quant_state.bitsandbytes__fp4", Stored{DType::kU8, {int64_t(js.size())}, js});
  expect_load_error("has both an nf4 and an fp4 quant_state");
}

TEST_F(Hostile, BadQuantStateJson) {
  const std::string name = kQ + ".weight.quant_state.bitsandbytes__nf4";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [48, 4)", "parse error"},
      {R"([1, 2])", "expected a JSON object"},
      {R"({"quant_type": "nf4", "blocksize": 48, "dtype": "float32", "shape": [48, 48]})", "expected a power of two"},
      {R"({"quant_type": "nf4", "blocksize": "64", "dtype": "float32", "shape": [48, 48]})", "\"blocksize\" has the wrong type"},
      {R"({"quant_type": "int4", "blocksize": 64, "dtype": "float32", "shape": [48, 48]})", "quant_type \"int4\""},
      {R"({"quant_type": "fp4", "blocksize": 64, "dtype": "float32", "shape": [48, 48]})", "says quant_type fp4"},
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float8", "shape": [48, 48]})", "dtype \"float8\""},
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [48, 47]})", "quant_state shape [48, 47], expected [48, 48]"},
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [2304]})", "expected [out_features, in_features]"},
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32"})", "missing field \"shape\""},
      {R"({"quant_type": "nf4", "blocksize": 128, "dtype": "float32", "shape": [48, 48]})",
       "\"" + kQ + ".weight.absmax\" has shape [36], expected [18]"},
      {R"({"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [48, 48], "nested_blocksize": 256,
          "nested_dtype": "float32", "nested_offset": 0.1})", "\"" + kQ + ".weight.absmax\" has dtype F32, expected U8"},
  };
  for (const auto& [js, fragment] : cases) {
    SCOPED_TRACE(js);
    write("llama-bias-untied-nf4", name, Stored{DType::kU8, {int64_t(js.size())}, js});
    expect_load_error(fragment);
  }
}

TEST_F(Hostile, WrongTensorsOfA4BitLayer) {
  const std::string w = kQ + ".weight";
  write("llama-bias-untied-nf4", w, Stored{DType::kU8, {1151, 1}, std::string(1151, '\0')});
  expect_load_error("\"" + w + "\" has shape [1151, 1], expected [1152, 1]");
  write("llama-bias-untied-nf4", w + ".absmax", Stored{DType::kF16, {36}, std::string(72, '\0')});
  expect_load_error("\"" + w + ".absmax\" has dtype F16, expected F32");
  std::vector<float> absmax(36, 0.5f);
  absmax[7] = std::nanf("");
  write("llama-bias-untied-nf4", w + ".absmax", Stored{DType::kF32, {36}, floats(absmax)});
  expect_load_error("\"" + w + ".absmax\" element 7 is nan, expected a finite value >= 0");
  std::vector<float> book(quant::bnb::kNf4.begin(), quant::bnb::kNf4.end());
  book[3] = std::nextafter(book[3], 0.0f);
  write("llama-bias-untied-nf4", w + ".quant_map", Stored{DType::kF32, {16}, floats(book)});
  expect_load_error("\"" + w + ".quant_map\" entry 3");
  write("llama-bias-untied-nf4-dq", w + ".nested_quant_map", Stored{DType::kF32, {256}, floats(std::vector<float>(256, 2.0f))});
  expect_load_error("\"" + w + ".nested_quant_map\" entry 0 is 2.000000, expected a value in [-1, 1]");
  write("llama-bias-untied-nf4-dq", w + ".absmax", Stored{DType::kF32, {36}, floats(std::vector<float>(36, 1.0f))});
  expect_load_error("\"" + w + ".absmax\" has dtype F32, expected U8");
}

TEST_F(Hostile, WrongTensorsOfAnInt8Layer) {
  write("llama-bias-untied-int8", kQ + ".SCB", Stored{DType::kF32, {47}, floats(std::vector<float>(47, 1.0f))});
  expect_load_error("\"" + kQ + ".SCB\" has shape [47], expected [48]");
  write("llama-bias-untied-int8", kQ + ".SCB", std::nullopt);
  expect_load_error("missing tensor \"" + kQ + ".SCB\"");
  write("llama-bias-untied-int8", kQ + ".weight_format", Stored{DType::kU8, {}, std::string(1, '\x01')});
  expect_load_error("expected a U8 scalar 0 (row-major weights)");
  write("llama-bias-untied-int8", kQ + ".weight", Stored{DType::kU8, {48, 48}, std::string(2304, '\0')});
  expect_load_error("has dtype U8, expected I8");
}

TEST(BnbSerialized, QuantizationConfigFields) {
  using quant::bnb::bnb_config_from_json;
  const std::string what = "config.json quantization_config";
  EXPECT_FALSE(bnb_config_from_json({{"quant_method", "gptq"}}, what));
  const auto c = bnb_config_from_json({{"quant_method", "bitsandbytes"}, {"load_in_4bit", true},
                                       {"bnb_4bit_quant_type", "nf4"}, {"bnb_4bit_use_double_quant", true}}, what);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->type, BnbType::kNf4);
  EXPECT_EQ(c->absmax, AbsmaxStorage::kDoubleQuant);
  // transformers' default 4-bit type is fp4.
  EXPECT_EQ(bnb_config_from_json({{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}}, what)->type, BnbType::kFp4);
  test::expect_error([&] { bnb_config_from_json({{"quant_method", "bitsandbytes"}}, what); },
                     "exactly one of load_in_4bit and load_in_8bit", ErrorKind::kFormat);
  test::expect_error([&] { bnb_config_from_json({{"quant_method", "bitsandbytes"}, {"load_in_8bit", true},
                                                 {"llm_int8_has_fp16_weight", true}}, what); },
                     "llm_int8_has_fp16_weight", ErrorKind::kUnsupported);
  test::expect_error([&] { bnb_config_from_json({{"quant_method", "bitsandbytes"}, {"load_in_4bit", true},
                                                 {"bnb_4bit_quant_storage", "bfloat16"}}, what); },
                     "only uint8 is read", ErrorKind::kUnsupported);
  test::expect_error([&] { bnb_config_from_json({{"quant_method", "bitsandbytes"}, {"load_in_8bit", true},
                                                 {"llm_int8_threshold", -1}}, what); },
                     "llm_int8_threshold", ErrorKind::kFormat);
}

}  // namespace
}  // namespace gptq
