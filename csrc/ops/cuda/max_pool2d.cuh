// max_pool2d's CUDA kernels as elementwise functors (cuda_common.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include <limits>

#include "../common.h"
#include "../pool2d.h"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

// One output element per call.  torch's rule, as in the CPU kernel: NaN
// wins (the last NaN of the window), the first maximum wins among equals,
// and an all -inf window reports its first valid element.
template <typename scalar_t>
struct MaxPoolForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  scalar_t* output;
  int64_t* indices;  // laid out like output
  Strides4d in_s, out_s;
  Pool2dShape s;
  bool channels_last;  // the output's memory order, for coalesced stores

  static MaxPoolForward make(const at::Tensor& input, const at::Tensor& output,
                             const at::Tensor& indices, const Pool2dShape& s) {
    TORCH_INTERNAL_ASSERT(indices.strides() == output.strides());
    return {input.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
            indices.mutable_data_ptr<int64_t>(), strides_of(input), strides_of(output), s,
            is_channels_last(output)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d o = coord_in_memory_order(i, s.channels, s.out_h, s.out_w, channels_last);
    const int64_t h0 = o.h * s.stride_h - s.pad_h;
    const int64_t w0 = o.w * s.stride_w - s.pad_w;
    const TapRange th = valid_taps(h0, s.in_h, s.kernel_h, s.dilation_h);
    const TapRange tw = valid_taps(w0, s.in_w, s.kernel_w, s.dilation_w);
    const scalar_t* plane = input + o.n * in_s.n + o.c * in_s.c;
    int64_t best = (h0 + th.first * s.dilation_h) * s.in_w + (w0 + tw.first * s.dilation_w);
    acc_t best_val = -std::numeric_limits<acc_t>::infinity();
    for (int64_t kh = th.first; kh < th.last; ++kh) {
      const int64_t ih = h0 + kh * s.dilation_h;
      for (int64_t kw = tw.first; kw < tw.last; ++kw) {
        const int64_t iw = w0 + kw * s.dilation_w;
        const acc_t v = static_cast<acc_t>(plane[ih * in_s.h + iw * in_s.w]);
        if (replaces_max(v, best_val)) {
          best_val = v;
          best = ih * s.in_w + iw;
        }
      }
    }
    const int64_t out_at = offset_of(out_s, o.n, o.c, o.h, o.w);
    output[out_at] = static_cast<scalar_t>(best_val);
    indices[out_at] = best;
  }
};

// One grad_input element per call, gathering grad_output from the windows
// that cover it and chose it: a fixed order, no atomics.  As in torch's CUDA
// kernel, the indices must be those the forward returned (an index outside
// its own window contributes nothing).
template <typename scalar_t>
struct MaxPoolBackward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  const int64_t* indices;
  scalar_t* grad_input;
  Strides4d go_s, idx_s, gi_s;
  Pool2dShape s;
  bool channels_last;  // grad_input's memory order

  static MaxPoolBackward make(const at::Tensor& grad_output, const at::Tensor& indices,
                              const at::Tensor& grad_input, const Pool2dShape& s) {
    return {grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
            grad_input.mutable_data_ptr<scalar_t>(), strides_of(grad_output),
            strides_of(indices), strides_of(grad_input), s, is_channels_last(grad_input)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d p = coord_in_memory_order(i, s.channels, s.in_h, s.in_w, channels_last);
    const TapRange oh_range =
        covering_outputs(p.h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
    const TapRange ow_range =
        covering_outputs(p.w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
    const int64_t target = p.h * s.in_w + p.w;
    const scalar_t* go_plane = grad_output + p.n * go_s.n + p.c * go_s.c;
    const int64_t* idx_plane = indices + p.n * idx_s.n + p.c * idx_s.c;
    const acc_t acc =
        sum_where_chosen<acc_t>(go_plane, go_s, idx_plane, idx_s, oh_range, ow_range, target);
    grad_input[offset_of(gi_s, p.n, p.c, p.h, p.w)] = static_cast<scalar_t>(acc);
  }
};

}  // namespace gpu
}  // namespace pycnn
