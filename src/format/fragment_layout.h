// GPTQ codes reordered for the tensor cores: the load-time layout of the CUDA backend's
// mma kernels (src/backend/cuda/gptq_mma.cu), defined here in plain C++ so that the
// repack and its reading are tested on any machine. The checkpoint format on disk stays
// standard GPTQ (gptq_format.h); this is built from it once, when a layer is loaded.
//
// The products run as y[M, N]ᵀ = W[N, K] · x[M, K]ᵀ on mma.m16n8k16: W is the A operand
// (16 output rows x 16 inputs per tile), x the B operand (16 inputs x 8 batch rows).
// In the A fragment, lane = 4·g + t (g = lane / 4, t = lane % 4) holds 8 values in four
// 32-bit registers p = 0..3, two 16-bit halves h each:
//   register p, half h  ↔  row g + 8·(p & 1), input 2·t + 8·(p >> 1) + h.
// So one lane needs 8 codes per 16 x 16 tile, and the layout stores exactly those, in
// the order the registers are formed:
//   - inputs are sorted by group first (act-order made sequential, `perm` maps back), K
//     is padded to Kp, a multiple of kChunk = 64 inputs (4 tiles), with code 0;
//   - N is padded to a multiple of 16 rows (code 0, scale 0);
//   - words [N/16][Kp/64][32 lanes][bits]: per (16-row tile, 64-input chunk) each lane's
//     bits words hold its 32 codes of the chunk's 4 tiles, so a warp reads 32·4·bits
//     contiguous bytes and each lane one 16-byte (4-bit), 32-byte (8-bit), 8-byte
//     (2-bit) or 12-byte (3-bit) run;
//   - within a lane's words, code (tile j, register p, half h), s = 4·j + p:
//       4-bit: word j,        bit 4·p + 16·h   (one shift and mask gives register p)
//       8-bit: word 2j + p/2, bit 16·(p & 1) + 8·h   (one byte permute)
//       2-bit: word j/2,      bit 2·(s % 8) + 16·h
//       3-bit: its low 2 bits as 2-bit in words 0-1; bit 2 in word 2, bit s + 16·h;
//   - scales fp16 [G, N/16·16] and zeros uint8 [G, N/16·16] (the zero itself, v2);
//   - tile_group [Kp/16]: the group of each 16-input tile (padding tiles: the last);
//   - chunk_group [Kp/64]: the group of a chunk whose 4 tiles share one and lie inside K,
//     else -1 (the kernel's per-chunk fast path; groups of 64 and more always share).
// A 16-input tile must lie in one group: make_fragment_layout declines (nullopt) when
// sorted inputs change group inside a tile (group sizes that are not multiples of 16).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "format/packing.h"

namespace gptq::quant {

inline constexpr int kFragmentRows = 16;  // output rows per A tile
inline constexpr int kFragmentTile = 16;  // inputs per A tile
inline constexpr int kFragmentChunk = 64; // inputs per lane run: 4 tiles
inline constexpr int kFragmentLanes = 32;
static_assert(kFragmentChunk % kFragmentTile == 0 && kFragmentChunk / kFragmentTile == 4);
// 8 codes per lane per tile: 32·8 = 256 = 16·16 values, each stored once.
static_assert(kFragmentLanes * 8 == kFragmentRows * kFragmentTile);

struct FragmentLayout {
  int bits = 0;
  int64_t K = 0, N = 0;  // the layer's shape
  int64_t Kp = 0;        // K rounded up to kFragmentChunk
  int64_t Nt = 0;        // row tiles: ceil(N / 16)
  int64_t G = 0;         // groups
  std::vector<uint32_t> words;      // [Nt][Kp/64][32][bits]
  std::vector<uint16_t> scales;     // [G][Nt*16] fp16 bit patterns
  std::vector<uint8_t> zeros;       // [G][Nt*16]
  std::vector<int32_t> tile_group;   // [Kp/16]
  std::vector<int32_t> chunk_group;  // [Kp/64], -1 where the tiles differ or pass K
  std::vector<int32_t> perm;        // [K]: sorted input j is input column perm[j]; empty: identity
  // Every chunk's 4 tiles, padding included, lie in one group (tile_group[4c] is the
  // chunk's): group sizes that are multiples of 64, or one group. The decode kernel
  // (gptq_decode.cu) needs it; group 32 and sizes like 80 do not have it.
  bool chunks_one_group = false;
  // Every aligned pair of chunks [2i, 2i + 1] (128 inputs), padding included, lies in one
  // group: group sizes that are multiples of 128, or one group. The batch 9-256 kernel
  // (gptq_batch.cu) steps 128 inputs at a time and then enters a group once per step.
  bool pairs_one_group = false;

  int64_t row_stride() const { return Nt * kFragmentRows; }  // of scales and zeros
};

// Where code (row r in [0, 16), chunk input c in [0, 64)) of a tile sits: the lane, and
// the tile j, register p and half h of that lane's fragment.
struct FragmentSlot {
  int lane, j, p, h;
};
constexpr FragmentSlot fragment_slot(int r, int c) {
  const int j = c / kFragmentTile, k = c % kFragmentTile;
  return {.lane = 4 * (r % 8) + (k % 8) / 2, .j = j, .p = (r / 8) + 2 * (k / 8), .h = k % 2};
}
static_assert(fragment_slot(0, 0).lane == 0 && fragment_slot(9, 0).p == 1 && fragment_slot(0, 8).p == 2);
static_assert(fragment_slot(15, 63).lane == 31 && fragment_slot(15, 63).p == 3 && fragment_slot(15, 63).j == 3);

// Bit widths the layout holds (all of GPTQ's).
constexpr bool fragment_bits_supported(int bits) { return bits == 2 || bits == 3 || bits == 4 || bits == 8; }

// (word, bit) of a `width`-bit field of the slot, for the widths stored whole (the
// 3-bit codes' low 2 bits are stored as 2-bit ones).
struct FragmentField {
  int word, bit;
};
constexpr FragmentField fragment_field(int bits, const FragmentSlot& s) {
  const int i = 4 * s.j + s.p;  // the register's index among the chunk's 16
  switch (bits) {
    case 4: return {s.j, 4 * s.p + 16 * s.h};
    case 8: return {2 * s.j + s.p / 2, 16 * (s.p & 1) + 8 * s.h};
    default: return {i / 8, 2 * (i % 8) + 16 * s.h};  // 2-bit, and 3-bit's low 2 bits
  }
}

// The code at `slot` of one lane's chunk words w[0..bits), and its inverse. constexpr,
// so that the CUDA quantizer builds the layout on the device with these same lines.
constexpr uint32_t fragment_code(const uint32_t* w, int bits, const FragmentSlot& s) {
  const int width = bits == 3 ? 2 : bits;
  const FragmentField f = fragment_field(bits, s);
  uint32_t q = (w[f.word] >> f.bit) & ((1u << width) - 1);
  if (bits == 3) q |= ((w[2] >> (4 * s.j + s.p + 16 * s.h)) & 1u) << 2;
  return q;
}
constexpr void set_fragment_code(uint32_t* w, int bits, const FragmentSlot& s, uint32_t code) {
  const int width = bits == 3 ? 2 : bits;
  const uint32_t mask = (1u << width) - 1;
  const FragmentField f = fragment_field(bits, s);
  w[f.word] = (w[f.word] & ~(mask << f.bit)) | ((code & mask) << f.bit);
  if (bits == 3) {
    const int bit = 4 * s.j + s.p + 16 * s.h;
    w[2] = (w[2] & ~(1u << bit)) | (((code >> 2) & 1u) << bit);
  }
}

// The parts of the layout that depend on the shape and g_idx only: K, N, Kp, Nt, G,
// tile_group, chunk_group and perm (words, scales and zeros left empty). nullopt when a
// 16-input tile of the group-sorted inputs spans two groups. g_idx: [K], in [0, G).
std::optional<FragmentLayout> fragment_order(int bits, int64_t K, int64_t N, int64_t G,
                                             const std::vector<int32_t>& g_idx);

// Validates the checkpoint tensors (v2 zeros), then repacks. nullopt when a 16-input
// tile of the group-sorted inputs spans two groups.
std::optional<FragmentLayout> make_fragment_layout(const PackedLinear& packed);

// The reference reading: W [N, K] fp32 in the original input order, s·(q − z).
std::vector<float> dequantize(const FragmentLayout& l);

}  // namespace gptq::quant
