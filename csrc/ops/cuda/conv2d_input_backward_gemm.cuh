// conv2d's gradient with respect to its input as an implicit-GEMM problem
// (see conv2d_igemm.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>

#include "../conv2d.h"
#include "conv2d_igemm.cuh"

namespace pycnn {
namespace gpu {

// grad_in[n, g*cpg + c, ih, iw] = sum over taps (r, s) and channels k < kpg
// of grad_out[n, g*kpg + k, oh, ow] * w[g*kpg + k, c, r, s], where
// oh*stride_h = ih + pad_h - r*dilation_h (likewise ow) must divide exactly
// and land inside the output: per group a GEMM with M = input pixels,
// N = the group's input channels, K = taps x output channels.
//
// With stride > 1 the pixels are split into stride_h x stride_w phases
// (ih % stride_h, iw % stride_w) and each tile takes pixels of one phase.
// Whether a tap divides exactly depends only on the phase, so in tap-major
// steps a tap that reaches no output is skipped by the whole block instead
// of multiplying zeros.
template <typename scalar_t>
struct ConvInputGradProblem {
  using acc_t = at::acc_type<scalar_t, true>;

  const scalar_t* grad_output;
  const scalar_t* weight;
  scalar_t* grad_input;
  Strides4d go_s, w_s, gi_s;
  Conv2dShape shape;
  int64_t cpg, kpg;
  int64_t phases_h, phases_w;  // phases that hold any pixel: min(stride, in)
  int64_t per_phase_h, per_phase_w;  // pixels per phase along h, w: ceil(in / stride)
  int64_t phase_pixels;        // M of one phase: batch * per_phase_h * per_phase_w
  int64_t m_tiles, n_tiles, num_tiles;
  TapChannelAxis axis;         // taps x output channels of a group

  struct TileState {
    int64_t group, phase_h, phase_w, m0, n0, step_begin, step_end;
    // This thread's loader row: an input pixel of A, an input channel of B.
    bool a_valid, b_valid;
    int64_t a_base;  // grad_output offset of (n, the group's first channel, 0, 0)
    int64_t ih, iw;
    int64_t b_base;  // weight offset of (the group's first output channel, c, 0, 0)
  };

  // Input pixel m of a phase; false when it lies past the input's edge (the
  // last pixels of a phase when the input size is not a multiple of stride).
  PYCNN_HOST_DEVICE bool pixel_of(const TileState& t, int64_t m, int64_t& n, int64_t& ih,
                                  int64_t& iw) const {
    const int64_t qw = m % per_phase_w, rows = m / per_phase_w;
    const int64_t qh = rows % per_phase_h;
    n = rows / per_phase_h;
    ih = qh * shape.stride_h + t.phase_h;
    iw = qw * shape.stride_w + t.phase_w;
    return m < phase_pixels && ih < shape.in_h && iw < shape.in_w;
  }

  PYCNN_HOST_DEVICE TileState begin_tile(int64_t tile, int row) const {
    TileState t;
    int64_t rest = tile / m_tiles;
    t.m0 = (tile % m_tiles) * kTileM;
    const int64_t phase = rest % (phases_h * phases_w);
    rest /= phases_h * phases_w;
    t.phase_h = phase / phases_w;
    t.phase_w = phase % phases_w;
    t.n0 = (rest % n_tiles) * kTileN;
    t.group = rest / n_tiles;
    t.step_begin = 0;
    t.step_end = axis.steps;

    int64_t n;
    t.a_valid = pixel_of(t, t.m0 + row, n, t.ih, t.iw);
    t.a_base = n * go_s.n + t.group * kpg * go_s.c;

    const int64_t c = t.n0 + row;
    t.b_valid = c < cpg;
    t.b_base = t.group * kpg * w_s.n + c * w_s.c;
    return t;
  }

  PYCNN_HOST_DEVICE bool step_contributes(const TileState& t, int64_t step) const {
    if (axis.flat) return true;  // a flat step mixes taps
    int64_t r, s;
    axis.tap_of(step, r, s);
    return (t.phase_h + shape.pad_h - r * shape.dilation_h) % shape.stride_h == 0 &&
           (t.phase_w + shape.pad_w - s * shape.dilation_w) % shape.stride_w == 0;
  }

  PYCNN_HOST_DEVICE void load_step(const TileState& t, int64_t step, int row, int slot0,
                                   SharedTiles<acc_t>& tiles) const {
#pragma unroll
    for (int p = 0; p < kLoadPasses; ++p) {
      const int slot = slot0 + p * kSlotsPerPass;
      const TapChannel tc = axis.at(step, slot);  // tc.channel: an output channel
      acc_t a = acc_t(0), b = acc_t(0);
      if (t.a_valid && tc.valid) {
        const int64_t h = t.ih + shape.pad_h - tc.r * shape.dilation_h;
        const int64_t w = t.iw + shape.pad_w - tc.s * shape.dilation_w;
        if (h >= 0 && w >= 0 && h % shape.stride_h == 0 && w % shape.stride_w == 0) {
          const int64_t oh = h / shape.stride_h, ow = w / shape.stride_w;
          if (oh < shape.out_h && ow < shape.out_w) {
            a = static_cast<acc_t>(
                grad_output[t.a_base + tc.channel * go_s.c + oh * go_s.h + ow * go_s.w]);
          }
        }
      }
      if (t.b_valid && tc.valid) {
        b = static_cast<acc_t>(
            weight[t.b_base + tc.channel * w_s.n + tc.r * w_s.h + tc.s * w_s.w]);
      }
      tiles.a[slot][row] = a;
      tiles.b[slot][row] = b;
    }
  }

  PYCNN_HOST_DEVICE void store_tile(const TileState& t, const ThreadAccumulator<acc_t>& acc, int row0,
                                    int col0) const {
#pragma unroll
    for (int i = 0; i < kThreadM; ++i) {
      int64_t n, ih, iw;
      if (!pixel_of(t, t.m0 + row0 + i, n, ih, iw)) continue;
      const int64_t pixel = n * gi_s.n + ih * gi_s.h + iw * gi_s.w;
#pragma unroll
      for (int j = 0; j < kThreadN; ++j) {
        const int64_t c = t.n0 + col0 + j;
        if (c >= cpg) continue;
        grad_input[pixel + (t.group * cpg + c) * gi_s.c] = static_cast<scalar_t>(acc.v[i][j]);
      }
    }
  }
};

template <typename scalar_t>
ConvInputGradProblem<scalar_t> make_input_grad_problem(const at::Tensor& grad_output,
                                                       const at::Tensor& weight,
                                                       const at::Tensor& grad_input,
                                                       const Conv2dShape& s) {
  ConvInputGradProblem<scalar_t> p{};
  p.grad_output = grad_output.const_data_ptr<scalar_t>();
  p.weight = weight.const_data_ptr<scalar_t>();
  p.grad_input = grad_input.mutable_data_ptr<scalar_t>();
  p.go_s = strides_of(grad_output);
  p.w_s = strides_of(weight);
  p.gi_s = strides_of(grad_input);
  p.shape = s;
  p.cpg = s.in_channels_per_group();
  p.kpg = s.out_channels_per_group();
  p.phases_h = std::min(s.stride_h, s.in_h);
  p.phases_w = std::min(s.stride_w, s.in_w);
  p.per_phase_h = div_ceil(s.in_h, s.stride_h);
  p.per_phase_w = div_ceil(s.in_w, s.stride_w);
  p.phase_pixels = s.batch * p.per_phase_h * p.per_phase_w;
  p.m_tiles = div_ceil(p.phase_pixels, kTileM);
  p.n_tiles = div_ceil(p.cpg, kTileN);
  p.num_tiles = s.groups * p.n_tiles * p.phases_h * p.phases_w * p.m_tiles;
  p.axis = TapChannelAxis::make(p.kpg, s.kernel_h, s.kernel_w);
  return p;
}

}  // namespace gpu
}  // namespace pycnn
