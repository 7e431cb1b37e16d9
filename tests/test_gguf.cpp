// GGUF reader on hand-built files (valid and hostile) and dequantization on hand-built
// blocks, with layouts written here from the format description (src/io/gguf_dequant.h).
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/dtype.h"
#include "gguf_builder.h"
#include "io/gguf.h"
#include "io/gguf_dequant.h"
#include "temp_dir.h"
#include "test_util.h"

namespace gptq {
namespace {

using io::GgmlType;
using test::Builder;

// Two F32 tensors [2, 32] (dims {32, 2}) at offsets 0 and 256, plus metadata with an array.
std::string valid_file() {
  Builder g;
  g.header(3, 2, 3).kv_str("general.architecture", "llama").kv_u32("llama.block_count", 1);
  g.str("tokenizer.ggml.tokens").put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(2).str("a").str("b");
  g.tensor("x", {32, 2}, 0, 0).tensor("y", {32, 2}, 0, 256).pad();
  for (int i = 0; i < 128; ++i) g.put(float(i));
  return g.b;
}

TEST(Gguf, ReadsValidFile) {
  test::TempDir tmp;
  const io::GgufFile f(tmp.write("m.gguf", valid_file()));
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.require_string("general.architecture"), "llama");
  EXPECT_EQ(f.require_uint("llama.block_count"), 1u);
  EXPECT_EQ(*f.get_strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b"}));
  ASSERT_EQ(f.tensors().size(), 2u);
  const io::GgufTensorInfo& y = *f.find_tensor("y");
  EXPECT_EQ(y.shape(), (std::vector<int64_t>{2, 32}));
  float first;
  std::memcpy(&first, y.data.data(), 4);
  EXPECT_EQ(first, 64.0f);  // offset 256 bytes = value 64
  test::expect_error([&] { f.get_string("llama.block_count"); }, "is UINT32, expected STRING", ErrorKind::kFormat);
}

// One clear error per kind of damage, never a crash (run under the sanitizer build too).
TEST(Gguf, HostileFiles) {
  test::TempDir tmp;
  auto open = [&](const std::string& bytes) { io::GgufFile f(tmp.write("h.gguf", bytes)); };
  const std::string good = valid_file();
  auto expect = [&](const std::string& bytes, const std::string& fragment) {
    test::expect_error([&] { open(bytes); }, fragment);
  };
  expect(good.substr(0, 3), "no \"GGUF\" magic");
  expect("GGUX" + good.substr(4), "no \"GGUF\" magic");
  // Every truncation, at every byte, is a format error naming the file.
  for (std::size_t cut = 0; cut < good.size(); ++cut) {
    test::expect_error([&] { open(good.substr(0, cut)); }, "h.gguf: ", ErrorKind::kFormat);
  }
  expect(good.substr(0, 20), "truncated");
  expect(good.substr(0, good.size() - 1), "outside the data section");
  {
    Builder g;
    g.header(4, 0, 0);
    expect(g.b, "version 4 is not known");
  }
  {
    Builder g;
    g.header(1, 0, 0);
    expect(g.b, "version 1 is not supported");
  }
  {
    Builder g;
    g.header(3, 0, 1u << 30);
    expect(g.b, "metadata count");
  }
  {
    Builder g;
    g.header(3, 1000000, 0);
    expect(g.b, "tensor count");
  }
  {  // a string length far past the end
    Builder g;
    g.header(3, 0, 1).put<uint64_t>(1ull << 40);
    g.b.append(64, '\0');
    expect(g.b, "more than the limit");
  }
  {
    Builder g;
    g.header(3, 0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000);
    g.b.append(64, '\0');
    expect(g.b, "is 1000 bytes long");
  }
  {  // an array count past the end
    Builder g;
    g.header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 60);
    expect(g.b, "claims 1152921504606846976 elements");
  }
  {
    Builder g;
    g.header(3, 0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
    expect(g.b, "unknown value type 13");
  }
  {
    Builder g;
    g.header(3, 0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2);
    expect(g.b, "expected 0 or 1");
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {32, 1, 1, 1, 1}, 0, 0).pad();
    expect(g.b, "has 5 dimensions");
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {1ull << 32, 1ull << 32}, 0, 0).pad();
    expect(g.b, "element count overflows");
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {32}, 99, 0).pad();
    test::expect_error([&] { open(g.b); }, "tensor type 99", ErrorKind::kUnsupported);
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {32}, 0, 16).pad();
    expect(g.b, "not a multiple of the alignment");
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {32}, 0, 1ull << 40).pad();
    expect(g.b, "outside the data section");
  }
  {
    Builder g;
    g.header(3, 1, 0).tensor("t", {31}, 2, 0).pad();
    expect(g.b, "not a multiple of its block of 32");
  }
  {
    Builder g;
    g.header(3, 2, 0).tensor("a", {64}, 0, 0).tensor("b", {32}, 0, 128).pad();
    g.b.append(512, '\0');
    expect(g.b, "overlapping data");
  }
  {
    Builder g;
    g.header(3, 0, 1).kv_u32("general.alignment", 24);
    expect(g.b, "not a power of two");
  }
}

uint16_t h(float f) { return f32_to_f16(f); }
void put16(std::vector<std::byte>& b, std::size_t at, uint16_t v) { std::memcpy(b.data() + at, &v, 2); }

// Every value of the fast path equals the scalar reference twin.
void expect_twins(GgmlType type, const std::vector<std::byte>& block, const std::vector<float>& expected) {
  std::vector<float> fast(expected.size());
  io::dequantize(type, block, fast);
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(fast[i], expected[i]) << "value " << i;
    ASSERT_EQ(io::dequantize_reference(type, block, int64_t(i)), expected[i]) << "reference value " << i;
  }
}

TEST(GgufDequant, Q4_0AndQ4_1) {
  // Q4_0: d = 0.5, value j < 16 is the low nibble of byte j, j >= 16 the high nibble of j - 16.
  std::vector<std::byte> b(18);
  put16(b, 0, h(0.5f));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    const int lo = j, hi = 15 - j;
    b[2 + j] = std::byte(lo | hi << 4);
    want[j] = 0.5f * float(lo - 8);
    want[j + 16] = 0.5f * float(hi - 8);
  }
  expect_twins(GgmlType::kQ4_0, b, want);
  // Q4_1: x = d·q + m with m = -1.
  std::vector<std::byte> c(20);
  put16(c, 0, h(0.25f));
  put16(c, 2, h(-1.0f));
  for (int j = 0; j < 16; ++j) {
    c[4 + j] = b[2 + j];
    want[j] = 0.25f * float(j) - 1.0f;
    want[j + 16] = 0.25f * float(15 - j) - 1.0f;
  }
  expect_twins(GgmlType::kQ4_1, c, want);
}

TEST(GgufDequant, Q8_0AndQ8_K) {
  std::vector<std::byte> b(34);
  put16(b, 0, h(0.125f));
  std::vector<float> want(32);
  for (int j = 0; j < 32; ++j) {
    b[2 + j] = std::byte(uint8_t(int8_t(j * 8 - 128)));
    want[j] = 0.125f * float(j * 8 - 128);
  }
  expect_twins(GgmlType::kQ8_0, b, want);
  std::vector<std::byte> k(292);
  const float d = 0.01f;
  std::memcpy(k.data(), &d, 4);
  std::vector<float> wk(256);
  for (int j = 0; j < 256; ++j) {
    k[4 + j] = std::byte(uint8_t(int8_t(j - 128)));
    wk[j] = d * float(j - 128);
  }
  expect_twins(GgmlType::kQ8_K, k, wk);
}

// The 12 scale bytes of a Q4_K/Q5_K block holding 6-bit (sc[s], m[s]), s = 0..7.
std::vector<uint8_t> pack_scales(const int sc[8], const int m[8]) {
  std::vector<uint8_t> s(12, 0);
  for (int i = 0; i < 4; ++i) {
    s[i] = uint8_t((sc[i] & 63) | (sc[i + 4] >> 4) << 6);
    s[i + 4] = uint8_t((m[i] & 63) | (m[i + 4] >> 4) << 6);
    s[i + 8] = uint8_t((sc[i + 4] & 15) | (m[i + 4] & 15) << 4);
  }
  return s;
}

TEST(GgufDequant, Q4_KAndQ5_K) {
  const int sc[8] = {1, 2, 63, 17, 40, 33, 5, 62}, m[8] = {0, 63, 9, 31, 48, 7, 60, 21};
  const float d = 0.5f, dmin = 0.25f;
  const std::vector<uint8_t> scales = pack_scales(sc, m);
  std::vector<int> q(256);
  for (int j = 0; j < 256; ++j) q[j] = (j * 7 + 3) % 32;  // 5-bit values; Q4_K keeps the low 4
  for (int five = 0; five < 2; ++five) {
    const std::size_t size = five ? 176 : 144, qs_at = five ? 48 : 16;
    std::vector<std::byte> b(size);
    put16(b, 0, h(d));
    put16(b, 2, h(dmin));
    for (int i = 0; i < 12; ++i) b[4 + i] = std::byte(scales[i]);
    std::vector<float> want(256);
    for (int j = 0; j < 256; ++j) {
      const int s = j / 32, c = j / 64, l = j % 32, value = five ? q[j] : q[j] & 15;
      auto& byte = b[qs_at + 32 * c + l];
      byte |= std::byte((j % 64) < 32 ? (value & 15) : (value & 15) << 4);
      if (five && (value & 16)) b[16 + l] |= std::byte(1 << s);
      want[j] = d * float(sc[s]) * float(value) - dmin * float(m[s]);
    }
    expect_twins(five ? GgmlType::kQ5_K : GgmlType::kQ4_K, b, want);
  }
}

TEST(GgufDequant, Q6_K) {
  std::vector<std::byte> b(210);
  int8_t scales[16];
  for (int i = 0; i < 16; ++i) scales[i] = int8_t(i * 9 - 70);
  for (int i = 0; i < 16; ++i) b[192 + i] = std::byte(uint8_t(scales[i]));
  put16(b, 208, h(0.03125f));
  std::vector<float> want(256);
  for (int j = 0; j < 256; ++j) {
    const int q = (j * 13 + 5) % 64;  // 6 bits
    const int n = j / 128, k = (j % 128) / 32, l = j % 32;
    b[64 * n + 32 * (k & 1) + l] |= std::byte(k < 2 ? (q & 15) : (q & 15) << 4);
    b[128 + 32 * n + l] |= std::byte((q >> 4) << (2 * k));
    want[j] = 0.03125f * float(scales[8 * n + 2 * k + l / 16]) * float(q - 32);
  }
  expect_twins(GgmlType::kQ6_K, b, want);
}

TEST(GgufDequant, FloatTypesAndRandomBlocksAgree) {
  std::vector<std::byte> f(8);
  put16(f, 0, h(1.5f));
  put16(f, 2, h(-2.0f));
  put16(f, 4, f32_to_bf16(3.0f));
  put16(f, 6, f32_to_bf16(-0.5f));
  std::vector<float> out(2);
  io::dequantize(GgmlType::kF16, std::span(f).first(4), out);
  EXPECT_EQ(out, (std::vector<float>{1.5f, -2.0f}));
  io::dequantize(GgmlType::kBF16, std::span(f).subspan(4), out);
  EXPECT_EQ(out, (std::vector<float>{3.0f, -0.5f}));
  // Random bytes (with finite fp16 scales) through both paths, every type, several blocks.
  std::mt19937 rng(7);
  for (GgmlType t : {GgmlType::kQ4_0, GgmlType::kQ4_1, GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ5_K,
                     GgmlType::kQ6_K}) {
    const auto info = io::ggml_type_info(t);
    std::vector<std::byte> b(info.block_bytes * 3);
    for (auto& x : b) x = std::byte(rng() & 0xff);
    for (std::size_t blk = 0; blk < 3; ++blk) {
      for (std::size_t at : {std::size_t(0), std::size_t(2), info.block_bytes - 2}) {
        put16(b, blk * info.block_bytes + at, h(float(int(rng() % 200) - 100) / 64.0f));
      }
    }
    std::vector<float> fast(std::size_t(3 * info.block_values));
    io::dequantize(t, b, fast);
    for (std::size_t i = 0; i < fast.size(); ++i) {
      ASSERT_EQ(fast[i], io::dequantize_reference(t, b, int64_t(i))) << info.name << " value " << i;
    }
  }
  test::expect_error([&] { io::dequantize(GgmlType::kQ2_K, std::vector<std::byte>(84), out); }, "Q2_K",
                     ErrorKind::kUnsupported);
}

}  // namespace
}  // namespace gptq
