#include "conv2d_winograd.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../activation.h"
#include "../common.h"
#include "../settings.h"
#include "conv2d_gemm.h"
#include "gemm/kernel_set.h"
#include "cpu_features.h"
#include "thread_scratch.h"

namespace pycnn {
namespace cpu {

namespace {

constexpr int kTaps = 16;  // the 4x4 transformed positions

// Bytes of one chunk's V and M together: the GEMM phase streams them from
// L3 while each weight panel stays in L2.
constexpr int64_t kChunkBytes = 8 * 1024 * 1024;

// Transformed weights (U) up to kMaxFusedWeightBytes take the fused path
// instead: each task takes a block of tiles (V and M of kBlockBytes, about
// its L2) through all three steps.  V and M are 4x the input and output,
// and through L3 they compete with other tenants: the chunked ResNet
// layer1 forward ran at 7.0 ms on a quiet machine and 13 ms in a busy
// hour's benchmark.  Measured in one process on a busy machine, fused /
// chunked: layer1 7.7-8.1 / 8.3-9.1 ms, layer2's 28x28 6.2-6.7 / 7.8-9.4,
// VGG conv1_2 26.2-27.5 / 29-32.
constexpr int64_t kMaxFusedWeightBytes = 1024 * 1024;
constexpr int64_t kBlockBytes = 1024 * 1024;

// Fewer channels than this on either side leave the GEMMs too short for the
// transforms to pay.
constexpr int64_t kMinChannels = 32;

// One transformed weight panel (channels x NR) must stay in L2 while every
// tile of a chunk passes over it.
constexpr int64_t kMaxPanelBytes = 512 * 1024;

// grad_weight's products M (16 x channels x output channels) up to a core's
// L2 take the fused path, one M per part of the tiles, with blocks of tiles
// that fit beside it (measured on an Intel machine with 2 MiB of L2:
// 64 -> 64 channels, M 270 KB, and 128 -> 128, 1.1 MB, both ran faster
// fused).  kWeightParts parts bound the threads that path can use.
constexpr int64_t kMaxFusedProductBytes = 2048 * 1024;
constexpr int64_t kWeightParts = 8;

// The transforms read a few short rows of each channel plane in turn, a
// pattern the hardware prefetchers miss: they fetch the rows of the channel
// this many ahead themselves.
constexpr int64_t kPrefetchAhead = 2;

// Asks for the cache lines of count elements from p (clamped to the lines
// they touch; a prefetch never faults).
template <typename T>
inline void prefetch_run(const T* p, int64_t count) {
  const char* first = reinterpret_cast<const char*>(p);
  const char* last = reinterpret_cast<const char*>(p + count) - 1;
  for (const char* line = first; line <= last; line += 64) __builtin_prefetch(line, 0, 3);
  __builtin_prefetch(last, 0, 3);
}

// The rows of a product's B panel that every row block of M reads in turn:
// an L1's worth.  grad_weight's products reduce over a chunk's tiles (1024
// of them for 64 channels), and a whole panel (256 KB) streamed from L2
// once per 6-row block ran below the GEMM on an Intel AVX-512 machine.
constexpr int64_t kProductPanelBytes = 32 * 1024;

// A 3x3 stride-1 convolution in the form both passes reduce to:
//   dst[n][j][y][x] = bias[j] + sum_{ch, r, s} src[n][ch][y + r - pad_h][x + s - pad_w] * w(j, ch, r, s)
// with w(j, ch, r, s) = weight[j * col_stride + ch * channel_stride + rr * wh + ss * ww],
// (rr, ss) = (r, s), or (2 - r, 2 - s) when `flip`.
template <typename T>
struct WinogradConv {
  int64_t batch, src_channels, src_h, src_w, dst_channels, dst_h, dst_w, pad_h, pad_w;
  const T* src;
  int64_t sn, sc, sh, sw;
  T* dst;
  int64_t dn, dc, dh, dw;
  const T* weight;
  int64_t col_stride, channel_stride, wh, ww;
  bool flip;
  const T* bias;
  int64_t bias_stride;
  bool relu;
};

// U = G g G^T for every (column, channel): [tap][column tile][channel][NR],
// zero past the last column.  A block of channels of a column tile is
// first packed as [channel][3x3 tap][NR] (pack_columns: SIMD transposes),
// so that the transform runs along NR and stores whole panel rows; weight
// by weight, with 9 scattered loads and 16 scattered stores each, it took
// 6 ms for a 512x512 layer.
template <typename T>
void transform_weights(const WinogradConv<T>& p, int64_t nr, int64_t col_tiles, T* u) {
  constexpr int64_t kMaxNr = 64, kChannelBlock = 16;
  TORCH_INTERNAL_ASSERT(nr <= kMaxNr, "transform_weights: NR ", nr, " exceeds ", kMaxNr);
  const int64_t channels = p.src_channels;
  const int64_t tap_stride = col_tiles * channels * nr;
  std::vector<int64_t> kd_off(static_cast<size_t>(channels * 9));
  for (int64_t ch = 0; ch < channels; ++ch)
    for (int r = 0; r < 3; ++r)
      for (int s = 0; s < 3; ++s)
        kd_off[ch * 9 + r * 3 + s] = ch * p.channel_stride +
            (p.flip ? (2 - r) * p.wh + (2 - s) * p.ww : r * p.wh + s * p.ww);
  at::parallel_for(0, col_tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> packed(static_cast<size_t>(kChannelBlock * 9 * nr));
    T a[4][3][kMaxNr];
    for (int64_t ct = begin; ct < end; ++ct) {
      const int64_t cols = std::min(nr, p.dst_channels - ct * nr);
      for (int64_t ch0 = 0; ch0 < channels; ch0 += kChannelBlock) {
        const int64_t ch1 = std::min(channels, ch0 + kChannelBlock);
        pack_columns(p.weight + ct * nr * p.col_stride, p.col_stride, cols, nr, kd_off.data(),
                     ch0 * 9, ch1 * 9, packed.data());
        for (int64_t ch = ch0; ch < ch1; ++ch) {
          const T* g = packed.data() + (ch - ch0) * 9 * nr;  // [r * 3 + s][NR]
          // G g: rows g0, (g0 + g1 + g2) / 2, (g0 - g1 + g2) / 2, g2; then g G^T alike.
          for (int s = 0; s < 3; ++s) {
            for (int64_t j = 0; j < nr; ++j) {
              const T g0 = g[s * nr + j], g1 = g[(3 + s) * nr + j], g2 = g[(6 + s) * nr + j];
              a[0][s][j] = g0;
              a[1][s][j] = T(0.5) * (g0 + g1 + g2);
              a[2][s][j] = T(0.5) * (g0 - g1 + g2);
              a[3][s][j] = g2;
            }
          }
          T* out = u + (ct * channels + ch) * nr;
          for (int i = 0; i < 4; ++i) {
            T* r0 = out + (i * 4) * tap_stride;
            T* r1 = r0 + tap_stride;
            T* r2 = r1 + tap_stride;
            T* r3 = r2 + tap_stride;
            for (int64_t j = 0; j < nr; ++j) {
              const T a0 = a[i][0][j], a1 = a[i][1][j], a2 = a[i][2][j];
              r0[j] = a0;
              r1[j] = T(0.5) * (a0 + a1 + a2);
              r2[j] = T(0.5) * (a0 - a1 + a2);
              r3[j] = a2;
            }
          }
        }
      }
    }
  });
}

// V = B^T d B for tiles [t0, t1) of the chunk starting at tile `first`:
// V[tap][ch][t], taps channels x `rows` apart.  One row of tiles of one
// channel at a time: its four input rows, zero-padded, are combined
// (B^T d) along the whole row, then each tile's columns (d B); both loops
// run along the row and store each tap's tiles as one run.  Tile by tile,
// with a tile's 16 loads and 16 scattered stores, it took 2-3 ms of a
// 7 ms convolution.
template <typename T>
void transform_input(const WinogradConv<T>& p, int64_t tiles_w, int64_t tiles_per_image,
                     int64_t first, int64_t t0, int64_t t1, int64_t rows, T* v) {
  const int64_t channels = p.src_channels;
  const int64_t tap_stride = channels * rows;
  const int64_t width = 2 * tiles_w + 2;  // the padded row a tile row reads
  std::vector<T> buffer(static_cast<size_t>(8 * width));
  T* const d = buffer.data();        // [4][width]: the input rows
  T* const b = d + 4 * width;        // [4][width]: B^T d
  const int64_t col_lo = std::max<int64_t>(0, p.pad_w);                   // first column inside
  const int64_t col_hi = std::min<int64_t>(width, p.src_w + p.pad_w);      // past the last
  for (int64_t t = t0; t < t1;) {
    const int64_t tile = first + t;
    const int64_t n = tile / tiles_per_image, local = tile % tiles_per_image;
    const int64_t ty = local / tiles_w, tx0 = local % tiles_w;
    const int64_t count = std::min(tiles_w - tx0, t1 - t);  // tiles of this row in range
    const int64_t y0 = ty * 2 - p.pad_h;
    const int64_t x_base = tx0 * 2;  // the padded column of the first tile
    const int64_t span = 2 * count + 2;
    for (int64_t ch = 0; ch < channels; ++ch) {
      const T* plane = p.src + n * p.sn + ch * p.sc;
      if (ch + kPrefetchAhead < channels) {
        for (int i = 0; i < 4; ++i) {
          const int64_t y = y0 + i;
          if (y >= 0 && y < p.src_h && p.sw == 1)
            prefetch_run(plane + kPrefetchAhead * p.sc + y * p.sh + x_base - p.pad_w, span);
        }
      }
      for (int i = 0; i < 4; ++i) {
        T* row = d + i * width;
        const int64_t y = y0 + i;
        if (y < 0 || y >= p.src_h || col_lo >= col_hi) {
          std::fill_n(row + x_base, span, T(0));
          continue;
        }
        const T* src = plane + y * p.sh - p.pad_w * p.sw;
        const int64_t end = x_base + span;
        const int64_t lo = std::clamp(col_lo, x_base, end), hi = std::clamp(col_hi, lo, end);
        std::fill(row + x_base, row + lo, T(0));
        if (p.sw == 1) {
          std::memcpy(row + lo, src + lo, sizeof(T) * (hi - lo));
        } else {
          for (int64_t x = lo; x < hi; ++x) row[x] = src[x * p.sw];
        }
        std::fill(row + hi, row + end, T(0));
      }
      T* const b0 = b, *const b1 = b + width, *const b2 = b + 2 * width, *const b3 = b + 3 * width;
      const T* const d0 = d, *const d1 = d + width, *const d2 = d + 2 * width, *const d3 = d + 3 * width;
      // Distinct rows of one buffer, which GCC cannot tell (it ignores
      // __restrict on locals): scalar, this loop was the transform's hottest.
#pragma omp simd
      for (int64_t x = x_base; x < x_base + span; ++x) {
        b0[x] = d0[x] - d2[x];
        b1[x] = d1[x] + d2[x];
        b2[x] = d2[x] - d1[x];
        b3[x] = d1[x] - d3[x];
      }
      for (int i = 0; i < 4; ++i) {
        const T* bi = b + i * width + x_base;
        T* o0 = v + (i * 4) * tap_stride + ch * rows + t;
        T* o1 = o0 + tap_stride;
        T* o2 = o1 + tap_stride;
        T* o3 = o2 + tap_stride;
#pragma omp simd
        for (int64_t k = 0; k < count; ++k) {
          const T c0 = bi[2 * k], c1 = bi[2 * k + 1], c2 = bi[2 * k + 2], c3 = bi[2 * k + 3];
          o0[k] = c0 - c2;
          o1[k] = c1 + c2;
          o2[k] = c2 - c1;
          o3[k] = c1 - c3;
        }
      }
    }
    t += count;
  }
}

// Y = A^T m A (+ bias, ReLU) for tiles [t0, t1) of the chunk: A^T has rows
// (1, 1, 1, 0) and (0, 1, -1, -1).  M[tap][t][column], taps `rows` x
// `ldm` apart.
template <typename T>
void transform_output(const WinogradConv<T>& p, int64_t tiles_w, int64_t tiles_per_image,
                      int64_t first, int64_t t0, int64_t t1, int64_t rows, int64_t ldm,
                      const T* m) {
  const int64_t tap_stride = rows * ldm;
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t tile = first + t;
    const int64_t n = tile / tiles_per_image, local = tile % tiles_per_image;
    const int64_t y = (local / tiles_w) * 2, x = (local % tiles_w) * 2;
    const bool full_h = y + 1 < p.dst_h, full_w = x + 1 < p.dst_w;
    T* image = p.dst + n * p.dn + y * p.dh + x * p.dw;
    const T* in = m + t * ldm;
    for (int64_t j = 0; j < p.dst_channels; ++j) {
      T c[4][4];
      for (int i = 0; i < 4; ++i)
        for (int k = 0; k < 4; ++k) c[i][k] = in[(i * 4 + k) * tap_stride + j];
      T a[2][4];
      for (int k = 0; k < 4; ++k) {
        a[0][k] = c[0][k] + c[1][k] + c[2][k];
        a[1][k] = c[1][k] - c[2][k] - c[3][k];
      }
      const T bias = p.bias ? p.bias[j * p.bias_stride] : T(0);
      T out[2][2];
      for (int i = 0; i < 2; ++i) {
        out[i][0] = bias + (a[i][0] + a[i][1] + a[i][2]);
        out[i][1] = bias + (a[i][1] - a[i][2] - a[i][3]);
      }
      T* px = image + j * p.dc;
      for (int i = 0; i < 2; ++i) {
        if (i == 1 && !full_h) break;
        for (int k = 0; k < 2; ++k) {
          if (k == 1 && !full_w) break;
          px[i * p.dh + k * p.dw] = p.relu ? relu_value(out[i][k]) : out[i][k];
        }
      }
    }
  }
}

enum class Scratch { weights, chunk, block, weight_products, weight_parts };

// The 16 GEMMs of a chunk, M[tap] (+)= A[tap] x B[tap], for the (tap,
// column tile) units [unit0, unit1): A[tap] (a_tap_stride apart) is read
// through row_off / step_off, B[tap][column tile] is a packed panel of
// `steps` rows, M[tap] has m_rows rows of col_tiles * NR.  The forward and
// grad_input take A = V (rows: tiles, steps: channels) and B = U; grad_weight
// takes A = V (rows: channels, steps: tiles) and B = Gt, accumulating over
// chunks.
template <typename T>
void winograd_products(const IndirectKernel<T>& kernel, int64_t steps, int64_t col_tiles,
                       int64_t m_rows, int64_t a_tap_stride, const int64_t* row_off,
                       const int64_t* step_off, const T* b, const T* a, T* m, int64_t unit0,
                       int64_t unit1, bool accumulate) {
  const int64_t mr = kernel.mr, nr = kernel.nr, ldm = col_tiles * nr;
  const int64_t step_block =
      std::max<int64_t>(16, kProductPanelBytes / (nr * static_cast<int64_t>(sizeof(T))));
  for (int64_t unit = unit0; unit < unit1; ++unit) {
    const int64_t tap = unit / col_tiles, ct = unit % col_tiles;
    const T* a_tap = a + tap * a_tap_stride;
    const T* panel = b + (tap * col_tiles + ct) * steps * nr;
    T* c = m + tap * m_rows * ldm + ct * nr;
    for (int64_t k0 = 0; k0 < steps; k0 += step_block) {
      const int64_t kc = std::min(step_block, steps - k0);
      for (int64_t r0 = 0; r0 < m_rows; r0 += mr)
        kernel.run(kc, a_tap, row_off + r0, step_off + k0, panel + k0 * nr, nr, c + r0 * ldm,
                   ldm, nullptr, accumulate || k0 > 0);
    }
  }
}

// Offsets for winograd_products over `rows` rows, of which `count` are
// tiles: rows past the last tile repeat the first (computed, never stored).
inline void fill_offsets(int64_t count, int64_t rows, int64_t channels, int64_t* row_off,
                         int64_t* step_off) {
  for (int64_t q = 0; q < rows; ++q) row_off[q] = q < count ? q : 0;
  for (int64_t ch = 0; ch < channels; ++ch) step_off[ch] = ch * rows;
}


template <typename T>
void run_winograd(const WinogradConv<T>& p) {
  if (p.batch == 0 || p.dst_h == 0 || p.dst_w == 0 || p.dst_channels == 0) return;
  const IndirectKernel<T>& kernel = kernel_for_columns(kernel_set<T>(), p.dst_channels);
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const int64_t channels = p.src_channels;
  const int64_t col_tiles = (p.dst_channels + nr - 1) / nr, ldm = col_tiles * nr;
  const int64_t tiles_h = (p.dst_h + 1) / 2, tiles_w = (p.dst_w + 1) / 2;
  const int64_t tiles_per_image = tiles_h * tiles_w, tiles = p.batch * tiles_per_image;

  T* const u = thread_scratch<Scratch::weights, T>(kTaps * col_tiles * channels * nr);
  transform_weights(p, nr, col_tiles, u);

  const int64_t tile_bytes = kTaps * (channels + ldm) * static_cast<int64_t>(sizeof(T));
  const int64_t u_bytes = kTaps * col_tiles * channels * nr * static_cast<int64_t>(sizeof(T));
  if (u_bytes <= kMaxFusedWeightBytes) {
    // Small filters: each task takes a block of tiles through all three
    // steps, its V and M in its own L2, reading all of U (itself L2-sized).
    const int64_t block = std::min(tiles, std::max<int64_t>(mr, kBlockBytes / tile_bytes / mr * mr));
    const int64_t block_rows = (block + mr - 1) / mr * mr;
    at::parallel_for(0, (tiles + block - 1) / block, 1, [&](int64_t begin, int64_t end) {
      T* const v = thread_scratch<Scratch::block, T>(kTaps * block_rows * (channels + ldm));
      T* const m = v + kTaps * block_rows * channels;
      std::vector<int64_t> offsets(static_cast<size_t>(block_rows + channels));
      int64_t* const row_off = offsets.data();
      int64_t* const step_off = row_off + block_rows;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t first = b * block, count = std::min(block, tiles - first);
        const int64_t rows = (count + mr - 1) / mr * mr;
        fill_offsets(count, rows, channels, row_off, step_off);
        transform_input(p, tiles_w, tiles_per_image, first, 0, count, rows, v);
        winograd_products(kernel, channels, col_tiles, rows, rows * channels, row_off, step_off,
                          u, v, m, 0, kTaps * col_tiles, false);
        transform_output(p, tiles_w, tiles_per_image, first, 0, count, rows, ldm, m);
      }
    });
    return;
  }
  // Large filters: chunks of tiles in three parallel steps, so that U is
  // read once per chunk; V and M pass through L3.
  const int64_t chunk = std::min(tiles, std::max<int64_t>(mr, kChunkBytes / tile_bytes / mr * mr));
  const int64_t chunk_rows = (chunk + mr - 1) / mr * mr;
  T* const v = thread_scratch<Scratch::chunk, T>(kTaps * chunk_rows * (channels + ldm));
  T* const m = v + kTaps * chunk_rows * channels;
  std::vector<int64_t> offsets(static_cast<size_t>(chunk_rows + channels));
  int64_t* const row_off = offsets.data();
  int64_t* const step_off = row_off + chunk_rows;
  const int64_t threads = at::get_num_threads();
  for (int64_t first = 0; first < tiles; first += chunk) {
    const int64_t count = std::min(chunk, tiles - first);
    const int64_t rows = (count + mr - 1) / mr * mr;
    fill_offsets(count, rows, channels, row_off, step_off);
    const int64_t grain = std::max<int64_t>(1, count / (4 * threads));
    at::parallel_for(0, count, grain, [&](int64_t t0, int64_t t1) {
      transform_input(p, tiles_w, tiles_per_image, first, t0, t1, rows, v);
    });
    at::parallel_for(0, kTaps * col_tiles, 1, [&](int64_t begin, int64_t end) {
      winograd_products(kernel, channels, col_tiles, rows, rows * channels, row_off, step_off,
                        u, v, m, begin, end, false);
    });
    at::parallel_for(0, count, grain, [&](int64_t t0, int64_t t1) {
      transform_output(p, tiles_w, tiles_per_image, first, t0, t1, rows, ldm, m);
    });
  }
}

// ------------------------------------------------------------ grad_weight
// dW[k][c] = sum over images and 2x2 tiles of grad_output of the 3x3
// correlation of the tile's 4x4 input patch d with its 2x2 gradient g.  By
// the transposition principle (dW = d/dW of <g, forward(d, W)>), the
// forward's Winograd form turns into
//   dW[k][c] = G^T [ sum_tiles (A g_k A^T) . (B^T d_c B) ] G,
// with the forward's A, B and G: the input transform is the forward's, and
// the sum over tiles of the 16 elementwise products is 16 GEMMs with the
// tiles as their reduction, M[tap][c][k] = V[tap][c][tile] x Gt[tap][tile][k].
// Chunks of tiles add to M in a fixed order, and each (tap, column tile)
// block of M belongs to one task: bitwise repeatable for any thread count.

// Gt = A g A^T for tiles [t0, t1) of the chunk starting at tile `first`,
// packed as the micro-kernel's B panels: [tap][column tile][t][NR], with
// `count` tiles a panel and zero past the last column.  A has rows (1, 0),
// (1, 1), (1, -1), (0, -1); grad_output is zero past its edges.  One run of
// tiles along a tile row and one column tile at a time: each column's
// gradient rows are read along the run into tap-major rows [tap][j][tile],
// which L x L transposes turn into panel rows.  Column by column straight
// into the panels (16 scattered stores per value) took 40 % of ResNet
// layer1's grad_weight.
template <typename T>
void transform_grad_output(const T* go, int64_t gn, int64_t gc, int64_t gh, int64_t gw,
                           int64_t channels, int64_t out_h, int64_t out_w, int64_t tiles_w,
                           int64_t tiles_per_image, int64_t first, int64_t t0, int64_t t1,
                           int64_t count, int64_t nr, int64_t col_tiles, T* gt) {
  const KernelSet<T>& set = kernel_set<T>();
  const int64_t lanes = set.vector_width;
  const bool transposes = set.transpose != nullptr && nr % lanes == 0;
  const int64_t tap_stride = col_tiles * count * nr;
  const int64_t width = (tiles_w + lanes - 1) / lanes * lanes;  // a run's tiles, rounded up
  std::vector<T> buffer(static_cast<size_t>(kTaps * nr * width + 12 * tiles_w + lanes * nr));
  T* const rows = buffer.data();                 // [tap][j][tile]
  T* const g = rows + kTaps * nr * width;        // two gradient rows, then e and o
  T* const tail = g + 12 * tiles_w;              // [lanes][nr]
  for (int64_t t = t0; t < t1;) {
    const int64_t tile = first + t;
    const int64_t n = tile / tiles_per_image, local = tile % tiles_per_image;
    const int64_t ty = local / tiles_w, tx0 = local % tiles_w;
    const int64_t run = std::min(tiles_w - tx0, t1 - t);
    const int64_t y = ty * 2, x0 = tx0 * 2;
    const int64_t xs = std::min<int64_t>(2 * run, out_w - x0);  // columns inside
    for (int64_t ct = 0; ct < col_tiles; ++ct) {
      for (int64_t j = 0; j < nr; ++j) {
        const int64_t k = ct * nr + j;
        // The two gradient rows: in place where both lie whole inside a
        // dense row, else copied with zeros past the edges.
        const T* src = go + n * gn + std::min(k, channels - 1) * gc + y * gh + x0 * gw;
        if (k + kPrefetchAhead < channels && gw == 1) {
          prefetch_run(src + kPrefetchAhead * gc, 2 * run);
          if (y + 1 < out_h) prefetch_run(src + kPrefetchAhead * gc + gh, 2 * run);
        }
        const T* g0 = src;
        const T* g1 = src + gh;
        if (k >= channels || gw != 1 || xs < 2 * run || y + 1 >= out_h) {
          T* const r0 = g;
          T* const r1 = g + 2 * run;
          for (int64_t x = 0; x < 2 * run; ++x) r0[x] = r1[x] = T(0);
          if (k < channels) {
            for (int64_t x = 0; x < xs; ++x) r0[x] = src[x * gw];
            if (y + 1 < out_h)
              for (int64_t x = 0; x < xs; ++x) r1[x] = src[gh + x * gw];
          }
          g0 = r0;
          g1 = r1;
        }
        // Deinterleaved: even and odd columns of both rows, then A g
        // (rows g0, g0 + g1, g0 - g1, -g1) as four pairs of rows (a, b),
        // each of which becomes (a, a + b, a - b, -b): loops the compiler
        // vectorises along the run.
        T* __restrict const e = g + 4 * run;  // [4][run]: a of rows 0..3
        T* __restrict const o = e + 4 * run;  // [4][run]: b of rows 0..3
        // (GCC ignores __restrict on locals: without the pragma the
        // deinterleave ran scalar.)
#pragma omp simd
        for (int64_t i = 0; i < run; ++i) {
          const T g00 = g0[2 * i], g01 = g0[2 * i + 1], g10 = g1[2 * i], g11 = g1[2 * i + 1];
          e[i] = g00, e[run + i] = g00 + g10, e[2 * run + i] = g00 - g10, e[3 * run + i] = -g10;
          o[i] = g01, o[run + i] = g01 + g11, o[2 * run + i] = g01 - g11, o[3 * run + i] = -g11;
        }
        for (int r = 0; r < 4; ++r) {
          const T* __restrict a = e + r * run;
          const T* __restrict b = o + r * run;
          T* __restrict out0 = rows + ((r * 4 + 0) * nr + j) * width;
          T* __restrict out1 = rows + ((r * 4 + 1) * nr + j) * width;
          T* __restrict out2 = rows + ((r * 4 + 2) * nr + j) * width;
          T* __restrict out3 = rows + ((r * 4 + 3) * nr + j) * width;
#pragma omp simd
          for (int64_t i = 0; i < run; ++i) {
            out0[i] = a[i];
            out1[i] = a[i] + b[i];
            out2[i] = a[i] - b[i];
            out3[i] = -b[i];
          }
        }
      }
      for (int tap = 0; tap < kTaps; ++tap) {
        const T* src = rows + tap * nr * width;
        T* dst = gt + tap * tap_stride + (ct * count + t) * nr;
        int64_t i = 0;
        if (transposes)
          for (; i + lanes <= run; i += lanes)
            for (int64_t j = 0; j < nr; j += lanes)
              set.transpose(src + j * width + i, width, dst + i * nr + j, nr);
        if (transposes && i < run) {
          // The run's last, partial block of tiles: transposed whole into
          // `tail` (the rows' columns past the run hold stale values), its
          // first rows copied out.  Element by element, the 12 tiles left
          // of a 28-tile run took a quarter of the transform.
          for (int64_t j = 0; j < nr; j += lanes)
            set.transpose(src + j * width + i, width, tail + j, nr);
          std::memcpy(dst + i * nr, tail, sizeof(T) * (run - i) * nr);
          i = run;
        }
        for (; i < run; ++i)
          for (int64_t j = 0; j < nr; ++j) dst[i * nr + j] = src[j * width + i];
      }
    }
    t += run;
  }
}

// dW[k][c] = G^T M G for channels [c0, c1): G^T has rows (1, 1/2, 1/2, 0),
// (0, 1/2, -1/2, 0) and (0, 1/2, 1/2, 1).  M[tap][c][k], taps c_rows x ldm apart.
template <typename T>
void transform_weight_products(const T* m, int64_t c_rows, int64_t ldm, int64_t c0, int64_t c1,
                               int64_t out_channels, T* dw, int64_t wk, int64_t wc, int64_t wr,
                               int64_t ws) {
  const int64_t tap_stride = c_rows * ldm;
  for (int64_t c = c0; c < c1; ++c) {
    for (int64_t k = 0; k < out_channels; ++k) {
      T v[4][4];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) v[i][j] = m[(i * 4 + j) * tap_stride + c * ldm + k];
      T z[3][4];
      for (int j = 0; j < 4; ++j) {
        const T half_sum = T(0.5) * (v[1][j] + v[2][j]);
        z[0][j] = v[0][j] + half_sum;
        z[1][j] = T(0.5) * (v[1][j] - v[2][j]);
        z[2][j] = half_sum + v[3][j];
      }
      T* out = dw + k * wk + c * wc;
      for (int r = 0; r < 3; ++r) {
        const T half_sum = T(0.5) * (z[r][1] + z[r][2]);
        out[r * wr + 0 * ws] = z[r][0] + half_sum;
        out[r * wr + 1 * ws] = T(0.5) * (z[r][1] - z[r][2]);
        out[r * wr + 2 * ws] = half_sum + z[r][3];
      }
    }
  }
}

bool winograd_enabled() { return cpu_conv_kernels() == kCpuConvKernelsAuto; }

// Output pixels (all images) below which the weight transform and the
// reading of U (16/9 of the weights) cost more than the products save.
// Measured against the GEMM, forward, 2 threads: 512 -> 512 channels at
// 7x7 won 10-15 % with 8 images (392 pixels), tied with 4 and lost 40 %
// with 1; 256 -> 256 at 14x14 won 35 % with 1 image (196 pixels), as did
// 64- and 128-channel layers of one image.
constexpr int64_t kMinPixels = 128;
constexpr int64_t kMinPixelsLargeFilter = 320;
constexpr int64_t kLargeFilter = 256 * 256;  // C * K

bool suits(const Conv2dShape& s, int64_t src_channels, int64_t dst_channels, int64_t pixels) {
  constexpr int64_t kMaxNr = 64, kMaxElement = 8;
  const int64_t min_pixels =
      src_channels * dst_channels > kLargeFilter ? kMinPixelsLargeFilter : kMinPixels;
  return winograd_enabled() && s.groups == 1 && s.kernel_h == 3 && s.kernel_w == 3 &&
         s.stride_h == 1 && s.stride_w == 1 && s.dilation_h == 1 && s.dilation_w == 1 &&
         src_channels >= kMinChannels && dst_channels >= kMinChannels &&
         src_channels * kMaxNr * kMaxElement <= kMaxPanelBytes && pixels >= min_pixels;
}

}  // namespace

bool conv2d_winograd_suits(const Conv2dShape& s) {
  return suits(s, s.in_channels, s.out_channels, s.batch * s.out_h * s.out_w);
}

bool conv2d_input_backward_winograd_suits(const Conv2dShape& s) {
  // grad_input pads grad_output by 2 - pad: a padding above 2 would crop it.
  return suits(s, s.out_channels, s.in_channels, s.batch * s.in_h * s.in_w) && s.pad_h <= 2 &&
         s.pad_w <= 2;
}

bool conv2d_weight_backward_winograd_suits(const Conv2dShape& s) {
  // grad_weight's transforms cost more per tile than the forward's (the
  // gradient's tiles are packed into panels each call), so it needs more
  // channels, and long rows of tiles or a large filter.  Measured against
  // the GEMM (2 threads): 32 -> 32 channels at 16x16 lost 40 %, 32 <-> 256
  // at 28x28 5 %, 64 -> 64 at 8x8 20 %; 64 -> 64 at 16x16 tied, at 56x56
  // won 7 %, and 512 -> 512 at 7x7 won 10-25 %.
  constexpr int64_t kMinWeightChannels = 64, kMinRow = 16, kLargeProducts = 128 * 128;
  return suits(s, s.in_channels, s.out_channels, s.batch * s.out_h * s.out_w) &&
         std::min(s.in_channels, s.out_channels) >= kMinWeightChannels &&
         (s.out_w >= kMinRow || s.in_channels * s.out_channels >= kLargeProducts);
}

namespace {

// The WinogradConv of src -> dst (sizes and strides from the tensors).  The
// forward pass reads weight[column][channel]; grad_input (`transposed`)
// reads weight[channel][column], flipped.
template <typename T>
WinogradConv<T> winograd_conv(const at::Tensor& src, const at::Tensor& dst,
                              const at::Tensor& weight, int64_t pad_h, int64_t pad_w,
                              bool transposed, const at::Tensor& bias, bool relu) {
  WinogradConv<T> p;
  p.batch = src.size(0);
  p.src_channels = src.size(1);
  p.src_h = src.size(2);
  p.src_w = src.size(3);
  p.dst_channels = dst.size(1);
  p.dst_h = dst.size(2);
  p.dst_w = dst.size(3);
  p.pad_h = pad_h;
  p.pad_w = pad_w;
  p.src = src.const_data_ptr<T>();
  p.sn = src.stride(0), p.sc = src.stride(1), p.sh = src.stride(2), p.sw = src.stride(3);
  p.dst = dst.data_ptr<T>();
  p.dn = dst.stride(0), p.dc = dst.stride(1), p.dh = dst.stride(2), p.dw = dst.stride(3);
  p.weight = weight.const_data_ptr<T>();
  p.col_stride = weight.stride(transposed ? 1 : 0);
  p.channel_stride = weight.stride(transposed ? 0 : 1);
  p.wh = weight.stride(2);
  p.ww = weight.stride(3);
  p.flip = transposed;
  p.bias = bias.defined() ? bias.const_data_ptr<T>() : nullptr;
  p.bias_stride = bias.defined() ? bias.stride(0) : 0;
  p.relu = relu;
  return p;
}

}  // namespace

template <typename T>
void conv2d_forward_winograd(const at::Tensor& input, const at::Tensor& weight,
                             const at::Tensor& bias, const at::Tensor& output,
                             const Conv2dShape& s, bool relu) {
  run_winograd(winograd_conv<T>(input, output, weight, s.pad_h, s.pad_w, false, bias, relu));
}

template <typename T>
void conv2d_input_backward_winograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                    const at::Tensor& grad_input, const Conv2dShape& s) {
  run_winograd(winograd_conv<T>(grad_output, grad_input, weight, 2 - s.pad_h, 2 - s.pad_w, true,
                                at::Tensor(), false));
}

template <typename T>
void conv2d_weight_backward_winograd(const at::Tensor& grad_output, const at::Tensor& input,
                                     const at::Tensor& grad_weight, const Conv2dShape& s) {
  const int64_t channels = s.in_channels, out_channels = s.out_channels;
  if (grad_weight.numel() == 0) return;
  if (s.batch == 0 || s.out_h == 0 || s.out_w == 0) {
    grad_weight.zero_();
    return;
  }
  // The input transform is the forward's: tiles of the output, patches of
  // the input.
  const WinogradConv<T> p =
      winograd_conv<T>(input, grad_output, grad_weight, s.pad_h, s.pad_w, false, at::Tensor(),
                       false);
  const IndirectKernel<T>& kernel = kernel_for_columns(kernel_set<T>(), out_channels);
  const int64_t mr = kernel.mr, nr = kernel.nr;
  const int64_t col_tiles = (out_channels + nr - 1) / nr, ldm = col_tiles * nr;
  const int64_t c_rows = (channels + mr - 1) / mr * mr;
  const int64_t tiles_h = (s.out_h + 1) / 2, tiles_w = (s.out_w + 1) / 2;
  const int64_t tiles_per_image = tiles_h * tiles_w, tiles = s.batch * tiles_per_image;

  const int64_t tile_bytes = kTaps * (channels + ldm) * static_cast<int64_t>(sizeof(T));
  const int64_t m_size = kTaps * c_rows * ldm;
  const int64_t line = 64 / static_cast<int64_t>(sizeof(T));
  const T* go = grad_output.const_data_ptr<T>();
  const auto transform_tiles = [&](int64_t first, int64_t t0, int64_t t1, int64_t count,
                                   int64_t rows, T* v, T* gt) {
    transform_input(p, tiles_w, tiles_per_image, first, t0, t1, rows, v);
    transform_grad_output(go, grad_output.stride(0), grad_output.stride(1), grad_output.stride(2),
                          grad_output.stride(3), out_channels, s.out_h, s.out_w, tiles_w,
                          tiles_per_image, first, t0, t1, count, nr, col_tiles, gt);
  };
  T* dw = grad_weight.data_ptr<T>();
  const auto finish = [&](const T* m) {
    at::parallel_for(0, channels, 1, [&](int64_t c0, int64_t c1) {
      transform_weight_products(m, c_rows, ldm, c0, c1, out_channels, dw, grad_weight.stride(0),
                                grad_weight.stride(1), grad_weight.stride(2),
                                grad_weight.stride(3));
    });
  };

  const int64_t m_bytes = m_size * static_cast<int64_t>(sizeof(T));
  const int64_t l2_bytes = l2_cache_bytes();
  if (m_bytes <= std::min(kMaxFusedProductBytes, l2_bytes)) {
    // Small products: the tiles fall into kWeightParts fixed parts (the
    // same for any thread count), each taken by one task a block at a time
    // through both transforms and the products, into the part's own M;
    // the parts' M are then added in order.  V and Gt stay in the task's
    // L2 instead of passing through L3 (the chunked path below ran ResNet
    // layer1's grad_weight below the GEMM's speed on an Intel machine).
    const int64_t parts = std::min(tiles, kWeightParts);
    const int64_t block_bytes = std::min(kBlockBytes, std::max(l2_bytes - m_bytes, kBlockBytes / 4));
    const int64_t block = std::min(tiles, std::max<int64_t>(mr, block_bytes / tile_bytes));
    const int64_t block_rows = ((block + line - 1) / line | 1) * line;
    T* const m_parts = thread_scratch<Scratch::weight_parts, T>(parts * m_size);
    at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
      T* const v = thread_scratch<Scratch::block, T>(kTaps * (channels * block_rows + block * ldm));
      T* const gt = v + kTaps * channels * block_rows;
      std::vector<int64_t> offsets(static_cast<size_t>(c_rows + block));
      int64_t* const row_off = offsets.data();
      int64_t* const step_off = row_off + c_rows;
      for (int64_t t = 0; t < block; ++t) step_off[t] = t;
      for (int64_t part = begin; part < end; ++part) {
        const int64_t lo = part * tiles / parts, hi = (part + 1) * tiles / parts;
        for (int64_t first = lo; first < hi; first += block) {
          const int64_t count = std::min(block, hi - first);
          const int64_t rows = ((count + line - 1) / line | 1) * line;
          for (int64_t c = 0; c < c_rows; ++c) row_off[c] = (c < channels ? c : 0) * rows;
          transform_tiles(first, 0, count, count, rows, v, gt);
          winograd_products(kernel, count, col_tiles, c_rows, channels * rows, row_off, step_off,
                            gt, v, m_parts + part * m_size, 0, kTaps * col_tiles, first > lo);
        }
      }
    });
    T* const m = thread_scratch<Scratch::weight_products, T>(m_size);
    at::parallel_for(0, m_size, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T sum = m_parts[i];
        for (int64_t part = 1; part < parts; ++part) sum += m_parts[part * m_size + i];
        m[i] = sum;
      }
    });
    finish(m);
    return;
  }

  T* const m = thread_scratch<Scratch::weight_products, T>(m_size);
  const int64_t chunk = std::min(tiles, std::max<int64_t>(1, kChunkBytes / tile_bytes));
  // V's rows (one channel's tiles) are an odd number of cache lines apart:
  // the micro-kernel reads MR of them side by side, and rows a multiple of
  // 4 KiB apart all fall in the same L1 sets (ResNet layer1's 1024-tile
  // chunks ran 2.3x slower).
  const int64_t row_stride = ((chunk + line - 1) / line) | 1;
  T* const v = thread_scratch<Scratch::chunk, T>(kTaps * (channels * row_stride * line + chunk * ldm));
  T* const gt = v + kTaps * channels * row_stride * line;
  std::vector<int64_t> offsets(static_cast<size_t>(c_rows + chunk));
  int64_t* const row_off = offsets.data();
  int64_t* const step_off = row_off + c_rows;
  for (int64_t t = 0; t < chunk; ++t) step_off[t] = t;
  const int64_t threads = at::get_num_threads();
  for (int64_t first = 0; first < tiles; first += chunk) {
    const int64_t count = std::min(chunk, tiles - first);
    const int64_t rows = (((count + line - 1) / line) | 1) * line;
    // V[tap][c][t] with rows `rows` apart; rows of M past the channels
    // repeat the first (computed, never read).
    for (int64_t c = 0; c < c_rows; ++c) row_off[c] = (c < channels ? c : 0) * rows;
    const int64_t grain = std::max<int64_t>(1, count / (4 * threads));
    at::parallel_for(0, count, grain, [&](int64_t t0, int64_t t1) {
      transform_tiles(first, t0, t1, count, rows, v, gt);
    });
    const bool accumulate = first > 0;
    at::parallel_for(0, kTaps * col_tiles, 1, [&](int64_t begin, int64_t end) {
      winograd_products(kernel, count, col_tiles, c_rows, channels * rows, row_off, step_off, gt,
                        v, m, begin, end, accumulate);
    });
  }
  finish(m);
}

#define PYCNN_INSTANTIATE(T)                                                                  \
  template void conv2d_forward_winograd<T>(const at::Tensor&, const at::Tensor&,             \
                                           const at::Tensor&, const at::Tensor&,             \
                                           const Conv2dShape&, bool);                        \
  template void conv2d_input_backward_winograd<T>(const at::Tensor&, const at::Tensor&,      \
                                                  const at::Tensor&, const Conv2dShape&);     \
  template void conv2d_weight_backward_winograd<T>(const at::Tensor&, const at::Tensor&,     \
                                                   const at::Tensor&, const Conv2dShape&);
PYCNN_INSTANTIATE(float)
PYCNN_INSTANTIATE(double)
#undef PYCNN_INSTANTIATE

}  // namespace cpu
}  // namespace pycnn
