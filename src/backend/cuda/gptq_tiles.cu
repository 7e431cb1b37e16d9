// Dequantize-to-rows for the cuBLAS products of large batches (gptq_tiles.cuh).
//
// The work is a stream: read the codes once (bits/16 of the bytes written), write the
// 16-bit weights once, so the kernel is bound by the bytes it writes. What decides its
// speed is therefore the store pattern and the loads in flight, not the arithmetic:
//   - a warp decodes a chunk (16 rows x 64 inputs) from its lanes' A-fragment registers
//     into a shared tile, then writes it back as whole 16-byte vectors, 8 lanes per
//     128-byte row piece, so every warp store covers 4 full rows' pieces. (The previous
//     version wrote Wᵀ [K, count], 16 columns = 32 bytes per input row, one sector per
//     row: ~1 TB/s, NOTES.md version 6.) Rows [count, K] are what cuBLAS takes for
//     checkpoints' dense weights too (op T), so the product is the dense one.
//   - each warp loads the codes of kWarpChunks chunks before decoding any, so a thread
//     has that many 16-byte runs (4-bit) in flight.
#include "backend/cuda/gptq_tiles.cuh"

#include <type_traits>

#include "backend/cuda/fragment_codes.cuh"

namespace gptq::backend::cuda {
namespace {

using namespace fragment;

constexpr int kChunk = 64;  // inputs per lane run of codes (fragment_layout.h)
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kWarpChunks = 2;                          // chunks a warp decodes
constexpr int kBlockChunks = kWarps * kWarpChunks;  // 512 inputs of one 16-row tile a block

// Two values s·(q − z) into dst[0..1] from one A register (fp16 magic halves 1024 + q,
// fragment_codes.cuh). fp16: q − z exact by one HSUB2 of 1024 + z, then one HMUL2, one
// rounding; otherwise the exact product in fp32 (an fp16 scale times |q − z| < 256 fits
// 24 bits) rounded once to T.
template <class T>
__device__ __forceinline__ void put_pair(T* dst, uint32_t a, __half s, uint8_t z) {
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 q = *reinterpret_cast<const __half2*>(&a);
    const uint32_t bz_bits = magic_plus<__half>(z);
    const __half2 bz = *reinterpret_cast<const __half2*>(&bz_bits);
    *reinterpret_cast<__half2*>(dst) = __hmul2(__hsub2(q, bz), __half2half2(s));
  } else {
    const __half2 q = *reinterpret_cast<const __half2*>(&a);
    const float sf = __half2float(s), zf = 1024.0f + float(z);
    dst[0] = from_f32<T>(sf * (__low2float(q) - zf));
    dst[1] = from_f32<T>(sf * (__high2float(q) - zf));
  }
}

// grid (ceil(count / 16), ceil(chunks / kBlockChunks)), kThreads threads: block (x, y)
// writes rows [16x, 16x + 16) of out (weight rows n0 + 16x + ...) at inputs
// [512y, 512y + 512); warp w takes chunks 8y + 2w and 8y + 2w + 1.
template <int Bits, class T>
__global__ void __launch_bounds__(kThreads)
    dequantize_rows_kernel(MmaDeviceLayout w, int64_t n0, int64_t count, T* out, int64_t ldo) {
  pdl_begin();
  // One chunk per warp: [16 rows][64 inputs + one vector of padding]. The pad makes a
  // row 36 words (fp16), so a fragment's pair stores (rows gq, inputs 2·tq) fall in 32
  // distinct banks, and a row's 8 vectors are one conflict-free 128-byte phase.
  constexpr int kVec = 16 / int(sizeof(T));  // elements per 16-byte vector
  constexpr int kLen = kChunk + kVec;
  __shared__ __align__(16) T tile[kWarps][16][kLen];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gq = lane / 4, tq = lane % 4;
  const int64_t chunks = w.Kp / kChunk, rs = w.Nt * 16;
  const int64_t nt = n0 / 16 + blockIdx.x;  // the layout's row tile
  const int64_t ch0 = (int64_t(blockIdx.y) * kWarps + warp) * kWarpChunks;
  uint32_t r[kWarpChunks][Bits];
#pragma unroll
  for (int c = 0; c < kWarpChunks; ++c) {
    if (ch0 + c < chunks) load_run<Bits>(w.words + ((nt * chunks + ch0 + c) * 32 + lane) * Bits, r[c]);
  }
  const int64_t c_first = nt * 16 - n0;  // this tile's first row of out
  const int64_t rows = min(int64_t(16), min(count - c_first, w.N - nt * 16));
  T(&t)[16][kLen] = tile[warp];
#pragma unroll
  for (int c = 0; c < kWarpChunks; ++c) {
    const int64_t ch = ch0 + c;
    if (ch >= chunks) break;  // warp-uniform
    // Tile J of the chunk: lane (gq, tq) holds rows gq, gq + 8 at inputs 16J + 2tq (+1),
    // and + 8 (registers p = 0..3: row + 8·(p & 1), input + 8·(p >> 1)).
    auto decode = [&]<int J>() {
      uint32_t a[4];
      a_fragment<Bits, J, __half>(r[c], a);
      const int64_t at = w.tile_group[ch * 4 + J] * rs + nt * 16 + gq;
      const __half s[2] = {w.scales[at], w.scales[at + 8]};
      const uint8_t z[2] = {w.zeros[at], w.zeros[at + 8]};
#pragma unroll
      for (int p = 0; p < 4; ++p) {
        put_pair(&t[gq + 8 * (p & 1)][J * 16 + 2 * tq + 8 * (p >> 1)], a[p], s[p & 1], z[p & 1]);
      }
    };
    decode.template operator()<0>();
    decode.template operator()<1>();
    decode.template operator()<2>();
    decode.template operator()<3>();
    __syncwarp();
    constexpr int kRowVecs = kChunk / kVec;
#pragma unroll
    for (int i = 0; i < 16 * kRowVecs / 32; ++i) {
      const int v = i * 32 + lane, row = v / kRowVecs, e0 = v % kRowVecs * kVec;
      const int64_t k = ch * kChunk + e0;
      if (row >= rows || k >= w.K) continue;
      T* dst = out + (c_first + row) * ldo + k;
      if (k + kVec <= w.K) {
        *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(&t[row][e0]);
      } else {
        for (int e = 0; e < w.K - k; ++e) dst[e] = t[row][e0 + e];
      }
    }
    __syncwarp();  // the tile is rewritten by the next chunk
  }
}

}  // namespace

template <class T>
void gptq_mma_dequantize(const MmaDeviceLayout& w, int64_t n0, int64_t count, T* out, int64_t ldo,
                         cudaStream_t s) {
  GPTQ_CHECK(n0 % 16 == 0 && count > 0 && n0 + count <= w.N, "gptq_mma_dequantize: rows");
  GPTQ_CHECK(ldo >= w.K && ldo % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0,
             "gptq_mma_dequantize: output rows must be 16-byte aligned and hold K");
  const dim3 grid(ceil_div(count, 16), ceil_div(w.Kp / kChunk, kBlockChunks));
  GPTQ_CHECK(grid.y <= 65535, "gptq_mma_dequantize: K too large");
  switch (w.bits) {
    case 2: launch(dequantize_rows_kernel<2, T>, grid, kThreads, 0, s, w, n0, count, out, ldo); break;
    case 3: launch(dequantize_rows_kernel<3, T>, grid, kThreads, 0, s, w, n0, count, out, ldo); break;
    case 4: launch(dequantize_rows_kernel<4, T>, grid, kThreads, 0, s, w, n0, count, out, ldo); break;
    case 8: launch(dequantize_rows_kernel<8, T>, grid, kThreads, 0, s, w, n0, count, out, ldo); break;
    default: GPTQ_CHECK(false, "gptq_mma_dequantize: unsupported bits");
  }
}

template void gptq_mma_dequantize<float>(const MmaDeviceLayout&, int64_t, int64_t, float*, int64_t, cudaStream_t);
template void gptq_mma_dequantize<__half>(const MmaDeviceLayout&, int64_t, int64_t, __half*, int64_t, cudaStream_t);
template void gptq_mma_dequantize<__nv_bfloat16>(const MmaDeviceLayout&, int64_t, int64_t, __nv_bfloat16*, int64_t,
                                                 cudaStream_t);

}  // namespace gptq::backend::cuda
