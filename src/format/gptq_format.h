// The published GPTQ checkpoint packing (AutoGPTQ / GPTQModel / exllama), defined once.
// Everything that reads or writes qweight/qzeros goes through these helpers.
//
// Tensors of one quantized linear layer, K = in_features, N = out_features,
// G = ceil(K / group_size) (G = 1 for group_size = -1):
//   qweight int32 [K*bits/32, N]        codes packed along K (each column is one stream)
//   qzeros  int32 [G, ceil(N*bits/32)]  zero points packed along N (each row is one stream)
//   scales  fp16  [G, N]
//   g_idx   int32 [K]                   group of input column k, in [0, G)
//   w[n, k] = scales[g, n] * (q[n, k] - zero[g, n]),  g = g_idx[k]
//
// The bit layout, for every bits in {2, 3, 4, 8}: a stream of codes c_0, c_1, ... is the
// little-endian concatenation of its 32-bit words, and code i occupies stream bits
// [i*bits, (i+1)*bits), least significant bit first. For 2/4/8 bits no code crosses a
// word, so code i lives in word i/(32/bits) at bit (i%(32/bits))*bits. For 3 bits, 32
// codes fill 3 words exactly and two codes cross a word boundary (the "10|1|10|1|10"
// split of AutoGPTQ's pack and exllama's 3-bit unpack):
//   word 0: codes 0..9 at bits 3i;  bits 30-31 = low 2 bits of code 10
//   word 1: bit 0 = bit 2 of code 10;  codes 11..20 at bits 3(i-11)+1;
//           bit 31 = bit 0 of code 21
//   word 2: bits 0-1 = bits 1-2 of code 21;  codes 22..31 at bits 3(i-22)+2
//
// Sizes. The published packers compute K//32*bits rows and N//32*bits zero columns, so
// they need K % 32 == 0 and N % 32 == 0 (otherwise values are silently dropped). We
// require only that qweight holds whole codes in whole words: K % block_values(bits) == 0
// (32 for 3-bit, 32/bits otherwise), giving exactly K*bits/32 rows. For qzeros we accept
// any N: the stream is padded with zero bits to ceil(N*bits/32) words, which equals the
// published N*bits/32 whenever N % 32 == 0.
//
// Zero points. checkpoint_format "gptq" (v1, what AutoGPTQ writes) stores zero - 1;
// "gptq_v2" (GPTQModel) stores the zero itself. We encode v1 as (zero - 1) mod 2^bits
// and decode as (stored + 1) mod 2^bits, so zero 0 is stored as all ones in its field
// and reads back as 0. (AutoGPTQ's packer ORs an unmasked -1 into the word, which also
// sets the bits of the codes above it; its readers add 1 without the modulus. Neither
// can be represented faithfully, and the modular reading recovers the intended zero.)
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace gptq::quant {

// How zero points are stored in qzeros.
enum class Format { kV1, kV2 };

// checkpoint_format from quantize_config.json: "gptq" (v1) or "gptq_v2".
inline Format format_from_checkpoint(std::string_view checkpoint_format) {
  if (checkpoint_format == "gptq") return Format::kV1;
  if (checkpoint_format == "gptq_v2") return Format::kV2;
  throw Error(ErrorKind::kUnsupported, "checkpoint_format \"" + std::string(checkpoint_format) +
                                           "\" is not supported (expected \"gptq\" or \"gptq_v2\")");
}

constexpr bool bits_supported(int bits) {
  return bits == 2 || bits == 3 || bits == 4 || bits == 8;
}

constexpr uint32_t code_mask(int bits) { return (uint32_t{1} << bits) - 1; }

// gcd(bits, 32) by Euclid's loop, not std::gcd: these helpers also run in CUDA kernels,
// and nvcc 13 compiled libstdc++'s std::gcd(bits, 32) there as the constant 32 (the PTX
// of a kernel storing block_values(bits) stores 1, block_words stores bits / 32), so the
// device packer's word loop ran zero times and left the sweep's floats in qweight and
// qzeros (found by test_cuda_quant's packer test on the H200).
constexpr int gcd_with_32(int bits) {
  int a = bits, b = 32;
  while (b != 0) {
    const int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// A block is the smallest run of whole words that holds whole codes: 32/gcd(bits, 32)
// codes in bits/gcd(bits, 32) words (3-bit: 32 codes in 3 words; 4-bit: 8 in 1).
constexpr int block_values(int bits) { return 32 / gcd_with_32(bits); }
constexpr int block_words(int bits) { return bits / gcd_with_32(bits); }

// True when count codes fill whole words with no padding.
constexpr bool packs_exactly(int64_t count, int bits) {
  return count % block_values(bits) == 0;
}

// Words of a stream of count codes, padded with zero bits: ceil(count*bits/32).
constexpr int64_t packed_words(int64_t count, int bits) { return (count * bits + 31) / 32; }

// qweight rows for K input features; K must satisfy packs_exactly(K, bits).
constexpr int64_t qweight_rows(int64_t in_features, int bits) {
  return in_features * bits / 32;
}

// qzeros columns for N output features (any N).
constexpr int64_t qzeros_cols(int64_t out_features, int bits) {
  return packed_words(out_features, bits);
}

// Code i of a stream whose word j is words[j * stride] (stride = N for a qweight column,
// 1 for a qzeros row). The caller guarantees the stream holds code i.
constexpr uint32_t get_code(const int32_t* words, int64_t stride, int64_t i, int bits) {
  const int64_t bit = i * bits;
  const int64_t word = bit / 32;
  const int shift = int(bit % 32);
  uint32_t v = uint32_t(words[word * stride]) >> shift;
  if (shift + bits > 32) v |= uint32_t(words[(word + 1) * stride]) << (32 - shift);
  return v & code_mask(bits);
}

// Columns that packing loops over together: 16 int32 words, one 64-byte cache line of a
// qweight row.
inline constexpr int64_t kPackColumns = 16;

// Writes code i (only its low `bits` bits) into the stream, leaving other codes intact.
constexpr void set_code(int32_t* words, int64_t stride, int64_t i, int bits, uint32_t code) {
  const int64_t bit = i * bits;
  const int64_t word = bit / 32;
  const int shift = int(bit % 32);
  code &= code_mask(bits);
  const uint32_t lo = uint32_t(words[word * stride]);
  words[word * stride] = int32_t((lo & ~(code_mask(bits) << shift)) | (code << shift));
  if (shift + bits > 32) {
    const int spill = shift + bits - 32;  // high bits of the code that go to the next word
    const uint32_t hi = uint32_t(words[(word + 1) * stride]);
    words[(word + 1) * stride] = int32_t((hi & ~code_mask(spill)) | (code >> (32 - shift)));
  }
}

// Zero point -> the value stored in its qzeros field, and back (see the header comment).
constexpr uint32_t stored_zero(int32_t zero, int bits, Format format) {
  return uint32_t(format == Format::kV1 ? zero - 1 : zero) & code_mask(bits);
}
constexpr int32_t zero_from_stored(uint32_t stored, int bits, Format format) {
  return int32_t((format == Format::kV1 ? stored + 1 : stored) & code_mask(bits));
}

static_assert(block_values(3) == 32 && block_words(3) == 3);
static_assert(block_values(2) == 16 && block_values(4) == 8 && block_values(8) == 4);
static_assert(block_words(2) == 1 && block_words(4) == 1 && block_words(8) == 1);
static_assert(qweight_rows(4096, 4) == 512 && qweight_rows(4096, 3) == 384);
static_assert(qzeros_cols(4096, 4) == 512 && qzeros_cols(33, 3) == 4 && qzeros_cols(1, 8) == 1);
static_assert(stored_zero(0, 4, Format::kV1) == 15 && zero_from_stored(15, 4, Format::kV1) == 0);
static_assert(stored_zero(8, 4, Format::kV1) == 7 && stored_zero(8, 4, Format::kV2) == 8);
// Code 10 of a 3-bit block: bits 30-31 of word 0 plus bit 0 of word 1.
static_assert([] {
  int32_t w[3] = {int32_t(0x80000000u), 1, 0};
  return get_code(w, 1, 10, 3) == 0b110;
}());
// Code 21: bit 31 of word 1 plus bits 0-1 of word 2.
static_assert([] {
  int32_t w[3] = {0, int32_t(0x80000000u), 0b10};
  return get_code(w, 1, 21, 3) == 0b101;
}());
static_assert([] {
  int32_t w[3] = {0, 0, 0};
  set_code(w, 1, 21, 3, 0b111);
  return w[1] == int32_t(0x80000000u) && w[2] == 0b11 && get_code(w, 1, 22, 3) == 0;
}());

}  // namespace gptq::quant
