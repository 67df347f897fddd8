// conv2d forward as an implicit-GEMM problem (see conv2d_igemm.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../activation.h"
#include "../conv2d.h"
#include "conv2d_igemm.cuh"

namespace pycnn {
namespace gpu {

// out[n, g*kpg + k, oh, ow] = bias[g*kpg + k] + sum over taps (r, s) and
// channels c < cpg of in[n, g*cpg + c, oh*stride - pad + r*dilation, ...]
// * w[g*kpg + k, c, r, s]: per group a GEMM with M = output pixels
// (n, oh, ow), N = the group's output channels, K = taps x input channels.
template <typename scalar_t>
struct ConvForwardProblem {
  using acc_t = at::acc_type<scalar_t, true>;

  const scalar_t* input;
  const scalar_t* weight;
  const scalar_t* bias;  // null when the convolution has none
  scalar_t* output;
  Strides4d in_s, w_s, out_s;
  int64_t bias_stride;
  Conv2dShape shape;
  int64_t cpg, kpg;  // input and output channels per group
  int64_t pixels;    // M: batch * out_h * out_w
  int64_t m_tiles, n_tiles, num_tiles;
  TapChannelAxis axis;
  bool relu;  // conv2d_relu

  struct TileState {
    int64_t group, m0, n0, step_begin, step_end;
    // This thread's loader row: an output pixel of A, an output channel of B.
    bool a_valid, b_valid;
    int64_t a_base;    // input offset of (n, the group's first channel, 0, 0)
    int64_t ih0, iw0;  // top-left corner of the pixel's window, padding included
    int64_t b_base;    // weight offset of the output channel
  };

  PYCNN_HOST_DEVICE TileState begin_tile(int64_t tile, int row) const {
    TileState t;
    const int64_t rest = tile / m_tiles;
    t.m0 = (tile % m_tiles) * kTileM;
    t.n0 = (rest % n_tiles) * kTileN;
    t.group = rest / n_tiles;
    t.step_begin = 0;
    t.step_end = axis.steps;

    const int64_t m = t.m0 + row;
    t.a_valid = m < pixels;
    const int64_t ow = m % shape.out_w, rows = m / shape.out_w;
    const int64_t oh = rows % shape.out_h, n = rows / shape.out_h;
    t.ih0 = oh * shape.stride_h - shape.pad_h;
    t.iw0 = ow * shape.stride_w - shape.pad_w;
    t.a_base = n * in_s.n + t.group * cpg * in_s.c;

    const int64_t k = t.n0 + row;
    t.b_valid = k < kpg;
    t.b_base = (t.group * kpg + k) * w_s.n;
    return t;
  }

  PYCNN_HOST_DEVICE bool step_contributes(const TileState&, int64_t) const { return true; }

  PYCNN_HOST_DEVICE void load_step(const TileState& t, int64_t step, int row, int slot0,
                                   SharedTiles<acc_t>& tiles) const {
#pragma unroll
    for (int p = 0; p < kLoadPasses; ++p) {
      const int slot = slot0 + p * kSlotsPerPass;
      const TapChannel tc = axis.at(step, slot);
      acc_t a = acc_t(0), b = acc_t(0);
      if (t.a_valid && tc.valid) {
        const int64_t ih = t.ih0 + tc.r * shape.dilation_h;
        const int64_t iw = t.iw0 + tc.s * shape.dilation_w;
        if (ih >= 0 && ih < shape.in_h && iw >= 0 && iw < shape.in_w) {
          a = static_cast<acc_t>(
              input[t.a_base + tc.channel * in_s.c + ih * in_s.h + iw * in_s.w]);
        }
      }
      if (t.b_valid && tc.valid) {
        b = static_cast<acc_t>(
            weight[t.b_base + tc.channel * w_s.c + tc.r * w_s.h + tc.s * w_s.w]);
      }
      tiles.a[slot][row] = a;
      tiles.b[slot][row] = b;
    }
  }

  PYCNN_HOST_DEVICE void store_tile(const TileState& t, const ThreadAccumulator<acc_t>& acc, int row0,
                                    int col0) const {
#pragma unroll
    for (int i = 0; i < kThreadM; ++i) {
      const int64_t m = t.m0 + row0 + i;
      if (m >= pixels) continue;
      const int64_t ow = m % shape.out_w, rows = m / shape.out_w;
      const int64_t oh = rows % shape.out_h, n = rows / shape.out_h;
      const int64_t pixel = n * out_s.n + oh * out_s.h + ow * out_s.w;
#pragma unroll
      for (int j = 0; j < kThreadN; ++j) {
        const int64_t k = t.n0 + col0 + j;
        if (k >= kpg) continue;
        const int64_t channel = t.group * kpg + k;
        acc_t value = acc.v[i][j];
        if (bias != nullptr) value += static_cast<acc_t>(bias[channel * bias_stride]);
        if (relu) value = relu_value(value);
        output[pixel + channel * out_s.c] = static_cast<scalar_t>(value);
      }
    }
  }
};

template <typename scalar_t>
ConvForwardProblem<scalar_t> make_forward_problem(const at::Tensor& input,
                                                  const at::Tensor& weight,
                                                  const at::Tensor& bias,
                                                  const at::Tensor& output,
                                                  const Conv2dShape& s, bool relu) {
  ConvForwardProblem<scalar_t> p{};
  p.relu = relu;
  p.input = input.const_data_ptr<scalar_t>();
  p.weight = weight.const_data_ptr<scalar_t>();
  p.bias = bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr;
  p.output = output.mutable_data_ptr<scalar_t>();
  p.in_s = strides_of(input);
  p.w_s = strides_of(weight);
  p.out_s = strides_of(output);
  p.bias_stride = bias.defined() ? bias.stride(0) : 0;
  p.shape = s;
  p.cpg = s.in_channels_per_group();
  p.kpg = s.out_channels_per_group();
  p.pixels = s.batch * s.out_h * s.out_w;
  p.m_tiles = div_ceil(p.pixels, kTileM);
  p.n_tiles = div_ceil(p.kpg, kTileN);
  p.num_tiles = s.groups * p.n_tiles * p.m_tiles;
  p.axis = TapChannelAxis::make(p.cpg, s.kernel_h, s.kernel_w);
  return p;
}

}  // namespace gpu
}  // namespace pycnn
