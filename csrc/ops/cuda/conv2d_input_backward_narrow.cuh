// grad_input of a convolution with at most four input channels and one
// group (an RGB stem: ResNet's 7x7 stride 2, AlexNet's 11x11 stride 4), in
// float32 and float64.  As an implicit GEMM its N is the input channels, so
// a 64-wide tile would be 95 % padding; here each thread owns one input
// pixel and all of its channels instead:
//   * a block covers a kTileH x kTileW patch of one image; the output
//     region whose windows reach the patch, and the weights, are staged in
//     shared memory kChunk output channels at a time;
//   * with dilation 1 the taps that reach a pixel are r = (y + pad) % stride,
//     + stride, ... (likewise q): every tap a thread visits contributes, so
//     no multiply is wasted on a stride phase that misses;
//   * where the stride along w divides 32, a thread owns kP = 4 pixels of
//     one row and one stride phase (32 / stride lanes per phase, pixel j of
//     lane t at phase offset t + j 32 / stride): they meet the same taps, so
//     each weight read from shared memory serves kP pixels.  One pixel per
//     thread read a weight per multiply-add (4 shared loads per 3 FMA for
//     an RGB stem, 7 per 12 now); the lanes of a phase read neighbouring
//     grad_output elements, without bank conflicts.
// The staged region is zero outside grad_output, so the taps need no bounds
// tests (like the implicit GEMMs, a zero times an infinite weight is NaN).
// Each pixel sums output channels in increasing order, then taps r, q in
// increasing order: a fixed order, the same run after run.
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>

#include "../conv2d.h"
#include "cuda_common.cuh"
#include "fast_divmod.cuh"

namespace pycnn {
namespace gpu {

constexpr int kNarrowTileH = 8, kNarrowLanes = 32;  // a row of threads per patch row
constexpr int kNarrowMaxChannels = 4;
constexpr int kNarrowMaxChunk = 16;
constexpr int kNarrowPixelsPerThread = 4;  // where the stride along w divides 32
constexpr int64_t kNarrowSharedBytes = 40 * 1024;
static_assert(kNarrowTileH * kNarrowLanes == kThreadsPerBlock, "a thread per patch row and lane");

template <typename scalar_t, int kC, int kP>
struct NarrowInputGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  static constexpr int kChannels = kC, kPixels = kP;
  static constexpr int kTileW = kNarrowLanes * kP;  // patch columns
  using Acc = acc_t[kP][kC];
  struct Block {
    int n, y0, x0;     // the patch's image and top-left pixel
    int oh_lo, ow_lo;  // the staged output region's first row and column
  };

  const scalar_t* grad_output;
  const scalar_t* weight;
  scalar_t* grad_input;
  Strides4i go_s, w_s, gi_s;
  int out_channels, in_h, in_w, out_h, out_w, kernel_h, kernel_w;
  int stride_h, stride_w, pad_h, pad_w;
  int region_h, region_w, chunk;  // staged rows, columns and output channels
  int tiles_h, tiles_w;
  int phase_lanes;                 // kP > 1: lanes per stride phase, 32 / stride_w
  FastDivmod div_stride_h, div_stride_w, div_region_w, div_region, div_taps_w, div_taps;

  int blocks(int batch) const { return batch * tiles_h * tiles_w; }
  PYCNN_HOST_DEVICE int go_tile_elems() const { return chunk * region_h * region_w; }
  PYCNN_HOST_DEVICE int w_tile_elems() const { return chunk * kC * kernel_h * kernel_w; }

  PYCNN_HOST_DEVICE Block block(int b) const {
    Block blk;
    const int tw = b % tiles_w, rest = b / tiles_w;
    blk.n = rest / tiles_h;
    blk.y0 = (rest % tiles_h) * kNarrowTileH;
    blk.x0 = tw * kTileW;
    // The first output whose window reaches the patch (may be negative).
    blk.oh_lo = int(div_ceil(blk.y0 + pad_h - (kernel_h - 1), stride_h));
    blk.ow_lo = int(div_ceil(blk.x0 + pad_w - (kernel_w - 1), stride_w));
    return blk;
  }

  static NarrowInputGrad make(const at::Tensor& grad_output, const at::Tensor& weight,
                              const at::Tensor& grad_input, const Conv2dShape& s) {
    NarrowInputGrad op{};
    op.grad_output = grad_output.const_data_ptr<scalar_t>();
    op.weight = weight.const_data_ptr<scalar_t>();
    op.grad_input = grad_input.mutable_data_ptr<scalar_t>();
    op.go_s = strides32_of(grad_output), op.w_s = strides32_of(weight), op.gi_s = strides32_of(grad_input);
    op.out_channels = int(s.out_channels);
    op.in_h = int(s.in_h), op.in_w = int(s.in_w), op.out_h = int(s.out_h), op.out_w = int(s.out_w);
    op.kernel_h = int(s.kernel_h), op.kernel_w = int(s.kernel_w);
    op.stride_h = int(s.stride_h), op.stride_w = int(s.stride_w);
    op.pad_h = int(s.pad_h), op.pad_w = int(s.pad_w);
    op.region_h = int((kNarrowTileH + s.kernel_h - 2) / s.stride_h + 1);
    op.region_w = int((kTileW + s.kernel_w - 2) / s.stride_w + 1);
    op.phase_lanes = int(kNarrowLanes / s.stride_w);
    const int64_t bytes_per_channel =
        int64_t(sizeof(acc_t)) * (op.region_h * op.region_w + kC * s.kernel_h * s.kernel_w);
    op.chunk = int(std::min<int64_t>({kNarrowMaxChunk, s.out_channels,
                                      kNarrowSharedBytes / bytes_per_channel}));
    op.tiles_h = int((s.in_h + kNarrowTileH - 1) / kNarrowTileH);
    op.tiles_w = int((s.in_w + kTileW - 1) / kTileW);
    op.div_stride_h = FastDivmod::make(s.stride_h), op.div_stride_w = FastDivmod::make(s.stride_w);
    op.div_region_w = FastDivmod::make(op.region_w);
    op.div_region = FastDivmod::make(op.region_h * op.region_w);
    op.div_taps_w = FastDivmod::make(s.kernel_w);
    op.div_taps = FastDivmod::make(s.kernel_h * s.kernel_w);
    return op;
  }

  // Whether a shape fits: a chunk of at least one output channel in shared
  // memory, and for kP > 1 a stride along w that divides the lanes.
  static bool fits(const Conv2dShape& s) {
    if (kP > 1 && kNarrowLanes % s.stride_w != 0) return false;
    const int64_t region_h = (kNarrowTileH + s.kernel_h - 2) / s.stride_h + 1;
    const int64_t region_w = (kTileW + s.kernel_w - 2) / s.stride_w + 1;
    return int64_t(sizeof(acc_t)) * (region_h * region_w + kC * s.kernel_h * s.kernel_w) <=
           kNarrowSharedBytes;
  }

  int64_t shared_bytes() const {
    return int64_t(sizeof(acc_t)) * (go_tile_elems() + w_tile_elems());
  }

  // Thread tid's share of staging output channels [k0, k0 + chunk): the
  // region of grad_output (zero outside the output) and the weights
  // (zero past the last channel).
  PYCNN_HOST_DEVICE void stage(const Block& b, int k0, int tid, acc_t* go_tile, acc_t* w_tile) const {
    const int go_count = go_tile_elems();
    for (int e = tid; e < go_count; e += kThreadsPerBlock) {
      int kc, rest, i, j;
      div_region.divmod(e, kc, rest);
      div_region_w.divmod(rest, i, j);
      const int k = k0 + kc, oh = b.oh_lo + i, ow = b.ow_lo + j;
      const bool inside = k < out_channels && unsigned(oh) < unsigned(out_h) &&
                          unsigned(ow) < unsigned(out_w);
      go_tile[e] = inside ? static_cast<acc_t>(grad_output[go_s.at(b.n, k, oh, ow)]) : acc_t(0);
    }
    const int w_count = w_tile_elems();
    for (int e = tid; e < w_count; e += kThreadsPerBlock) {
      int kcc, tap, r, q;
      div_taps.divmod(e, kcc, tap);
      div_taps_w.divmod(tap, r, q);
      const int kc = kcc / kC, c = kcc - kc * kC;
      const int k = k0 + kc;
      w_tile[e] = k < out_channels ? static_cast<acc_t>(weight[w_s.at(k, c, r, q)]) : acc_t(0);
    }
  }

  // Column of thread tid's pixel j in the image.
  PYCNN_HOST_DEVICE int pixel_x(const Block& b, int tid, int j) const {
    const int lane = tid % kNarrowLanes;
    if constexpr (kP == 1) {
      return b.x0 + lane;
    } else {
      const int phase = lane / phase_lanes, t = lane - phase * phase_lanes;
      return b.x0 + phase + stride_w * (t + j * phase_lanes);
    }
  }

  // Adds the chunk's terms to thread tid's pixels.  Pixel j's output
  // columns are pixel 0's plus j * phase_lanes.
  PYCNN_HOST_DEVICE void compute(const Block& b, int k0, int tid, const acc_t* go_tile,
                                 const acc_t* w_tile, Acc& acc) const {
    const int yy = b.y0 + tid / kNarrowLanes + pad_h;
    const int xx = pixel_x(b, tid, 0) + pad_w;
    int oh0, r0, ow0, q0;
    div_stride_h.divmod(yy, oh0, r0);
    div_stride_w.divmod(xx, ow0, q0);
    const int kh = kernel_h, kw = kernel_w, rw = region_w, step = kP > 1 ? phase_lanes : 0;
    const int count = out_channels - k0 < chunk ? out_channels - k0 : chunk;
    for (int kc = 0; kc < count; ++kc) {
      const acc_t* g = go_tile + kc * region_h * rw;
      const acc_t* wk = w_tile + kc * kC * kh * kw;
      int oh = oh0;
      for (int r = r0; r < kh; r += stride_h, --oh) {
        const acc_t* g_row = g + (oh - b.oh_lo) * rw - b.ow_lo;
        int ow = ow0;
        for (int q = q0; q < kw; q += stride_w, --ow) {
          acc_t w[kC];
#pragma unroll
          for (int c = 0; c < kC; ++c) w[c] = wk[(c * kh + r) * kw + q];
#pragma unroll
          for (int j = 0; j < kP; ++j) {
            const acc_t gv = g_row[ow + j * step];
#pragma unroll
            for (int c = 0; c < kC; ++c) acc[j][c] += gv * w[c];
          }
        }
      }
    }
  }

  PYCNN_HOST_DEVICE void store(const Block& b, int tid, const Acc& acc) const {
    const int y = b.y0 + tid / kNarrowLanes;
    if (y >= in_h) return;
#pragma unroll
    for (int j = 0; j < kP; ++j) {
      const int x = pixel_x(b, tid, j);
      if (x >= in_w) continue;
#pragma unroll
      for (int c = 0; c < kC; ++c) grad_input[gi_s.at(b.n, c, y, x)] = static_cast<scalar_t>(acc[j][c]);
    }
  }
};

#if defined(__CUDACC__)
template <class Op>
__global__ void __launch_bounds__(kThreadsPerBlock) narrow_input_grad_kernel(const Op op) {
  using acc_t = typename Op::acc_t;
  extern __shared__ __align__(16) unsigned char narrow_shared[];
  acc_t* go_tile = reinterpret_cast<acc_t*>(narrow_shared);
  acc_t* w_tile = go_tile + op.go_tile_elems();
  const typename Op::Block b = op.block(blockIdx.x);
  typename Op::Acc acc;
#pragma unroll
  for (int j = 0; j < Op::kPixels; ++j)
#pragma unroll
    for (int c = 0; c < Op::kChannels; ++c) acc[j][c] = acc_t(0);
  for (int k0 = 0; k0 < op.out_channels; k0 += op.chunk) {
    op.stage(b, k0, threadIdx.x, go_tile, w_tile);
    __syncthreads();
    op.compute(b, k0, threadIdx.x, go_tile, w_tile, acc);
    __syncthreads();  // the tiles are restaged for the next chunk
  }
  op.store(b, threadIdx.x, acc);
}
#endif

}  // namespace gpu
}  // namespace pycnn
