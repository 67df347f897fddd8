// adaptive_max_pool2d's CUDA kernels as elementwise functors (cuda_common.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include <limits>

#include "../common.h"
#include "../pool2d.h"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

// One output element per call; the CPU kernel's rule for NaN, ties and all
// -inf windows.
template <typename scalar_t>
struct AdaptiveMaxForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  scalar_t* output;
  int64_t* indices;  // laid out like output
  Strides4d in_s, out_s;
  AdaptivePool2dShape s;
  bool channels_last;  // the output's memory order

  static AdaptiveMaxForward make(const at::Tensor& input, const at::Tensor& output,
                                 const at::Tensor& indices, const AdaptivePool2dShape& s) {
    TORCH_INTERNAL_ASSERT(indices.strides() == output.strides());
    return {input.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
            indices.mutable_data_ptr<int64_t>(), strides_of(input), strides_of(output), s,
            is_channels_last(output)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d o = coord_in_memory_order(i, s.channels, s.out_h, s.out_w, channels_last);
    const int64_t h0 = adaptive_start(o.h, s.out_h, s.in_h), h1 = adaptive_end(o.h, s.out_h, s.in_h);
    const int64_t w0 = adaptive_start(o.w, s.out_w, s.in_w), w1 = adaptive_end(o.w, s.out_w, s.in_w);
    const scalar_t* plane = input + o.n * in_s.n + o.c * in_s.c;
    int64_t best = h0 * s.in_w + w0;
    acc_t best_val = -std::numeric_limits<acc_t>::infinity();
    for (int64_t ih = h0; ih < h1; ++ih) {
      for (int64_t iw = w0; iw < w1; ++iw) {
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

// One grad_input element per call, gathering from the cells whose windows
// cover it and chose it: a fixed order, no atomics.  The indices must be
// those the forward returned.
template <typename scalar_t>
struct AdaptiveMaxBackward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  const int64_t* indices;
  scalar_t* grad_input;
  Strides4d go_s, idx_s, gi_s;
  AdaptivePool2dShape s;
  bool channels_last;  // grad_input's memory order

  static AdaptiveMaxBackward make(const at::Tensor& grad_output, const at::Tensor& indices,
                                  const at::Tensor& grad_input, const AdaptivePool2dShape& s) {
    return {grad_output.const_data_ptr<scalar_t>(), indices.const_data_ptr<int64_t>(),
            grad_input.mutable_data_ptr<scalar_t>(), strides_of(grad_output),
            strides_of(indices), strides_of(grad_input), s, is_channels_last(grad_input)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d p = coord_in_memory_order(i, s.channels, s.in_h, s.in_w, channels_last);
    const TapRange oh_range = adaptive_covering_outputs(p.h, s.in_h, s.out_h);
    const TapRange ow_range = adaptive_covering_outputs(p.w, s.in_w, s.out_w);
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
