// conv2d's direct (non-GEMM) kernels as functors for cuda_common.cuh's
// generic kernels:
//   * depthwise convolution: groups of one input channel each (any channel
//     multiplier kpg = out_channels / groups), where each output is a dot
//     product of at most kernel_h x kernel_w taps, too short for a GEMM tile;
//   * grad_bias, a plain reduction.
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../activation.h"
#include "../common.h"
#include "../conv2d.h"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

// One output element per call; output channel k reads input channel k / kpg.
template <typename scalar_t>
struct DepthwiseForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  const scalar_t* weight;
  const scalar_t* bias;  // null when the convolution has none
  scalar_t* output;
  Strides4d in_s, w_s, out_s;
  int64_t bias_stride, kpg;
  Conv2dShape s;
  bool channels_last;  // the output's memory order, for coalesced stores
  bool relu;           // conv2d_relu

  static DepthwiseForward make(const at::Tensor& input, const at::Tensor& weight,
                               const at::Tensor& bias, const at::Tensor& output,
                               const Conv2dShape& s, bool relu) {
    return {input.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(),
            bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
            output.mutable_data_ptr<scalar_t>(),
            strides_of(input), strides_of(weight), strides_of(output),
            bias.defined() ? bias.stride(0) : 0, s.out_channels_per_group(), s,
            is_channels_last(output), relu};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d o = coord_in_memory_order(i, s.out_channels, s.out_h, s.out_w, channels_last);
    const int64_t h0 = o.h * s.stride_h - s.pad_h;
    const int64_t w0 = o.w * s.stride_w - s.pad_w;
    const TapRange th = valid_taps(h0, s.in_h, s.kernel_h, s.dilation_h);
    const TapRange tw = valid_taps(w0, s.in_w, s.kernel_w, s.dilation_w);
    const scalar_t* in_plane = input + o.n * in_s.n + (o.c / kpg) * in_s.c;
    const scalar_t* w_plane = weight + o.c * w_s.n;
    acc_t acc = acc_t(0);
    for (int64_t r = th.first; r < th.last; ++r) {
      const int64_t ih = h0 + r * s.dilation_h;
      for (int64_t q = tw.first; q < tw.last; ++q) {
        const int64_t iw = w0 + q * s.dilation_w;
        acc += static_cast<acc_t>(in_plane[ih * in_s.h + iw * in_s.w]) *
               static_cast<acc_t>(w_plane[r * w_s.h + q * w_s.w]);
      }
    }
    if (bias != nullptr) acc += static_cast<acc_t>(bias[o.c * bias_stride]);
    if (relu) acc = relu_value(acc);
    output[offset_of(out_s, o.n, o.c, o.h, o.w)] = static_cast<scalar_t>(acc);
  }
};

// One grad_input element per call, gathered from the output positions whose
// windows cover it (a fixed order, no atomics).
template <typename scalar_t>
struct DepthwiseInputGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  const scalar_t* weight;
  scalar_t* grad_input;
  Strides4d go_s, w_s, gi_s;
  int64_t kpg;
  Conv2dShape s;
  bool channels_last;  // grad_input's memory order

  static DepthwiseInputGrad make(const at::Tensor& grad_output, const at::Tensor& weight,
                                 const at::Tensor& grad_input, const Conv2dShape& s) {
    return {grad_output.const_data_ptr<scalar_t>(),
            weight.const_data_ptr<scalar_t>(),
            grad_input.mutable_data_ptr<scalar_t>(),
            strides_of(grad_output), strides_of(weight), strides_of(grad_input),
            s.out_channels_per_group(), s, is_channels_last(grad_input)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d p = coord_in_memory_order(i, s.in_channels, s.in_h, s.in_w, channels_last);
    const TapRange oh_range =
        covering_outputs(p.h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
    const TapRange ow_range =
        covering_outputs(p.w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
    acc_t acc = acc_t(0);
    for (int64_t k = p.c * kpg; k < (p.c + 1) * kpg; ++k) {
      const scalar_t* go_plane = grad_output + p.n * go_s.n + k * go_s.c;
      const scalar_t* w_plane = weight + k * w_s.n;
      for (int64_t oh = oh_range.first; oh < oh_range.last; ++oh) {
        const int64_t dh = p.h + s.pad_h - oh * s.stride_h;  // >= 0 in the covering range
        if (dh % s.dilation_h != 0) continue;
        const int64_t r = dh / s.dilation_h;
        for (int64_t ow = ow_range.first; ow < ow_range.last; ++ow) {
          const int64_t dw = p.w + s.pad_w - ow * s.stride_w;
          if (dw % s.dilation_w != 0) continue;
          acc += static_cast<acc_t>(go_plane[oh * go_s.h + ow * go_s.w]) *
                 static_cast<acc_t>(w_plane[r * w_s.h + (dw / s.dilation_w) * w_s.w]);
        }
      }
    }
    grad_input[offset_of(gi_s, p.n, p.c, p.h, p.w)] = static_cast<scalar_t>(acc);
  }
};

// grad_weight[k, 0, r, q] (contiguous; e = k * taps + r * kernel_w + q) as
// a block reduction over the batch's output pixels j = (n, oh, ow).
template <typename scalar_t>
struct DepthwiseWeightGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  const scalar_t* input;
  scalar_t* grad_weight;
  Strides4d go_s, in_s;
  int64_t kpg;
  Conv2dShape s;
  int64_t outputs, length;  // weight elements; batch * out_h * out_w

  static DepthwiseWeightGrad make(const at::Tensor& grad_output, const at::Tensor& input,
                                  const at::Tensor& grad_weight, const Conv2dShape& s) {
    TORCH_INTERNAL_ASSERT(grad_weight.is_contiguous());
    return {grad_output.const_data_ptr<scalar_t>(),
            input.const_data_ptr<scalar_t>(),
            grad_weight.mutable_data_ptr<scalar_t>(),
            strides_of(grad_output), strides_of(input), s.out_channels_per_group(), s,
            grad_weight.numel(), s.batch * s.out_h * s.out_w};
  }

  PYCNN_HOST_DEVICE acc_t term(int64_t e, int64_t j) const {
    const int64_t taps = s.kernel_h * s.kernel_w;
    const int64_t k = e / taps, rs = e - k * taps;
    const int64_t r = rs / s.kernel_w, q = rs - r * s.kernel_w;
    const int64_t out_pixels = s.out_h * s.out_w;
    const int64_t n = j / out_pixels, rest = j - n * out_pixels;
    const int64_t oh = rest / s.out_w, ow = rest - oh * s.out_w;
    const int64_t ih = oh * s.stride_h - s.pad_h + r * s.dilation_h;
    const int64_t iw = ow * s.stride_w - s.pad_w + q * s.dilation_w;
    if (ih < 0 || ih >= s.in_h || iw < 0 || iw >= s.in_w) return acc_t(0);
    return static_cast<acc_t>(grad_output[offset_of(go_s, n, k, oh, ow)]) *
           static_cast<acc_t>(input[offset_of(in_s, n, k / kpg, ih, iw)]);
  }

  PYCNN_HOST_DEVICE void store(int64_t e, acc_t sum) const {
    grad_weight[e] = static_cast<scalar_t>(sum);
  }
};

// grad_bias[k] = the sum of grad_output[:, k, :, :], as a block reduction
// over j = (n, h, w).
template <typename scalar_t>
struct BiasGrad {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  scalar_t* grad_bias;
  Strides4d go_s;
  int64_t height, width;
  int64_t outputs, length;  // channels; batch * height * width

  static BiasGrad make(const at::Tensor& grad_output, const at::Tensor& grad_bias) {
    return {grad_output.const_data_ptr<scalar_t>(), grad_bias.mutable_data_ptr<scalar_t>(),
            strides_of(grad_output), grad_output.size(2), grad_output.size(3),
            grad_output.size(1), grad_output.size(0) * grad_output.size(2) * grad_output.size(3)};
  }

  PYCNN_HOST_DEVICE acc_t term(int64_t k, int64_t j) const {
    const int64_t plane = height * width;
    const int64_t n = j / plane, rest = j - n * plane;
    const int64_t h = rest / width, w = rest - h * width;
    return static_cast<acc_t>(grad_output[offset_of(go_s, n, k, h, w)]);
  }

  PYCNN_HOST_DEVICE void store(int64_t k, acc_t sum) const {
    grad_bias[k] = static_cast<scalar_t>(sum);
  }
};

}  // namespace gpu
}  // namespace pycnn
