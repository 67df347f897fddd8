// conv2d's gradient with respect to its weight as an implicit-GEMM problem
// (see conv2d_igemm.cuh), split along its long reduction.
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../conv2d.h"
#include "conv2d_igemm.cuh"

namespace pycnn {
namespace gpu {

// grad_w[g*kpg + k, c, r, s] = sum over pixels (n, oh, ow) of
// grad_out[n, g*kpg + k, oh, ow] * in[n, g*cpg + c, oh*stride - pad + r*dilation, ...]:
// per group a GEMM with M = the group's output channels, N = (c, r, s) in
// weight order, K = batch x output pixels.  A step is kTileK consecutive
// pixels of one image, so that decoding a pixel costs one division.
//
// K (every pixel of the batch) is usually far longer than M and N, so it is split
// into `splits` ranges, each summed by its own tiles into a slice of a
// workspace; SumSplits then adds the slices in split order.  Both
// the split count and every summation order depend only on the shapes:
// the gradient is bitwise the same run after run (no atomics).
template <typename scalar_t>
struct ConvWeightGradProblem {
  using acc_t = at::acc_type<scalar_t, true>;

  const scalar_t* grad_output;
  const scalar_t* input;
  scalar_t* grad_weight;  // written directly when splits == 1
  acc_t* partial;         // [splits][out_channels][crs] when splits > 1
  Strides4d go_s, in_s;
  Conv2dShape shape;
  int64_t cpg, kpg;
  int64_t crs;                // N: cpg * kernel_h * kernel_w
  int64_t out_pixels;         // out_h * out_w
  int64_t steps_per_image;    // ceil(out_pixels / kTileK)
  int64_t steps;              // batch * steps_per_image
  int64_t splits, steps_per_split;
  int64_t m_tiles, n_tiles, num_tiles;

  struct TileState {
    int64_t group, split, m0, n0, step_begin, step_end;
    // This thread's loader row: an output channel of A, a (c, r, s) of B.
    bool a_valid, b_valid;
    int64_t a_channel;  // grad_output offset of the output channel
    int64_t b_channel;  // input offset of the input channel c
    int64_t b_dh, b_dw; // input position of output pixel (0, 0) under tap (r, s)
  };

  PYCNN_HOST_DEVICE TileState begin_tile(int64_t tile, int row) const {
    TileState t;
    int64_t rest = tile / splits;
    t.split = tile % splits;
    t.m0 = (rest % m_tiles) * kTileM;
    rest /= m_tiles;
    t.n0 = (rest % n_tiles) * kTileN;
    t.group = rest / n_tiles;
    t.step_begin = t.split * steps_per_split;
    t.step_end = min_i64(t.step_begin + steps_per_split, steps);

    const int64_t k = t.m0 + row;
    t.a_valid = k < kpg;
    t.a_channel = (t.group * kpg + k) * go_s.c;

    const int64_t j = t.n0 + row;
    t.b_valid = j < crs;
    const int64_t taps = shape.kernel_h * shape.kernel_w;
    const int64_t c = j / taps, rs = j - c * taps;
    const int64_t r = rs / shape.kernel_w, s = rs - r * shape.kernel_w;
    t.b_channel = (t.group * cpg + c) * in_s.c;
    t.b_dh = r * shape.dilation_h - shape.pad_h;
    t.b_dw = s * shape.dilation_w - shape.pad_w;
    return t;
  }

  PYCNN_HOST_DEVICE bool step_contributes(const TileState&, int64_t) const { return true; }

  PYCNN_HOST_DEVICE void load_step(const TileState& t, int64_t step, int row, int slot0,
                                   SharedTiles<acc_t>& tiles) const {
    const int64_t n = step / steps_per_image;
    const int64_t first_pixel = (step - n * steps_per_image) * kTileK;
    const int64_t go_image = n * go_s.n, in_image = n * in_s.n;
#pragma unroll
    for (int p = 0; p < kLoadPasses; ++p) {
      const int slot = slot0 + p * kSlotsPerPass;
      const int64_t q = first_pixel + slot;
      acc_t a = acc_t(0), b = acc_t(0);
      if (q < out_pixels) {
        const int64_t oh = q / shape.out_w, ow = q - oh * shape.out_w;
        if (t.a_valid) {
          a = static_cast<acc_t>(grad_output[go_image + t.a_channel + oh * go_s.h + ow * go_s.w]);
        }
        const int64_t ih = oh * shape.stride_h + t.b_dh;
        const int64_t iw = ow * shape.stride_w + t.b_dw;
        if (t.b_valid && ih >= 0 && ih < shape.in_h && iw >= 0 && iw < shape.in_w) {
          b = static_cast<acc_t>(input[in_image + t.b_channel + ih * in_s.h + iw * in_s.w]);
        }
      }
      tiles.a[slot][row] = a;
      tiles.b[slot][row] = b;
    }
  }

  PYCNN_HOST_DEVICE void store_tile(const TileState& t, const ThreadAccumulator<acc_t>& acc, int row0,
                                    int col0) const {
    const int64_t out_channels = shape.out_channels;
#pragma unroll
    for (int i = 0; i < kThreadM; ++i) {
      const int64_t k = t.m0 + row0 + i;
      if (k >= kpg) continue;
      const int64_t row_offset = (t.group * kpg + k) * crs;
#pragma unroll
      for (int j = 0; j < kThreadN; ++j) {
        const int64_t col = t.n0 + col0 + j;
        if (col >= crs) continue;
        if (splits == 1) {
          grad_weight[row_offset + col] = static_cast<scalar_t>(acc.v[i][j]);
        } else {
          partial[t.split * out_channels * crs + row_offset + col] = acc.v[i][j];
        }
      }
    }
  }
};

// The second pass of a split grad_weight: grad_w[e] = the sum of the
// splits' partial sums of e, in split order.
template <typename scalar_t>
struct SumSplits {
  using acc_t = at::acc_type<scalar_t, true>;
  const acc_t* partial;  // [splits][count]
  int64_t splits, count;
  scalar_t* out;

  PYCNN_HOST_DEVICE void operator()(int64_t e) const {
    acc_t sum = partial[e];
    for (int64_t split = 1; split < splits; ++split) sum += partial[split * count + e];
    out[e] = static_cast<scalar_t>(sum);
  }
};

// How many ranges to split the pixels into: enough tiles to fill a large
// GPU, but at least kMinStepsPerSplit steps in each.  A function of the
// shapes only, never of the device, so the result is the same everywhere.
constexpr int64_t kTargetTiles = 512;
constexpr int64_t kMinStepsPerSplit = 16;
constexpr int64_t kMaxSplits = 64;

inline int64_t choose_weight_grad_splits(int64_t tiles, int64_t steps) {
  int64_t splits = div_ceil(kTargetTiles, tiles);
  splits = min_i64(splits, div_ceil(steps, kMinStepsPerSplit));
  return max_i64(1, min_i64(splits, kMaxSplits));
}

// The problem without its workspace: when splits > 1 the caller points
// `partial` at splits * grad_weight.numel() elements of acc_t.
template <typename scalar_t>
ConvWeightGradProblem<scalar_t> make_weight_grad_problem(const at::Tensor& grad_output,
                                                         const at::Tensor& input,
                                                         const at::Tensor& grad_weight,
                                                         const Conv2dShape& s) {
  ConvWeightGradProblem<scalar_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.input = input.const_data_ptr<scalar_t>();
  p.grad_weight = grad_weight.mutable_data_ptr<scalar_t>();
  p.partial = nullptr;
  p.go_s = strides_of(grad_output);
  p.in_s = strides_of(input);
  p.shape = s;
  p.cpg = s.in_channels_per_group();
  p.kpg = s.out_channels_per_group();
  p.crs = p.cpg * s.kernel_h * s.kernel_w;
  p.out_pixels = s.out_h * s.out_w;
  p.steps_per_image = div_ceil(p.out_pixels, kTileK);
  p.steps = s.batch * p.steps_per_image;
  TORCH_INTERNAL_ASSERT(p.steps > 0, "an empty batch has an all-zero grad_weight; no launch");
  p.m_tiles = div_ceil(p.kpg, kTileM);
  p.n_tiles = div_ceil(p.crs, kTileN);
  const int64_t tiles = s.groups * p.n_tiles * p.m_tiles;
  p.splits = choose_weight_grad_splits(tiles, p.steps);
  p.steps_per_split = div_ceil(p.steps, p.splits);
  p.splits = div_ceil(p.steps, p.steps_per_split);  // no empty split
  p.num_tiles = tiles * p.splits;
  return p;
}

}  // namespace gpu
}  // namespace pycnn
