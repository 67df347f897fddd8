// adaptive_avg_pool2d's CUDA kernels as elementwise functors (cuda_common.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../common.h"
#include "../pool2d.h"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

// One output element per call.
template <typename scalar_t>
struct AdaptiveAvgForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  scalar_t* output;
  Strides4d in_s, out_s;
  AdaptivePool2dShape s;
  bool channels_last;  // the output's memory order

  static AdaptiveAvgForward make(const at::Tensor& input, const at::Tensor& output,
                                 const AdaptivePool2dShape& s) {
    return {input.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
            strides_of(input), strides_of(output), s, is_channels_last(output)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d o = coord_in_memory_order(i, s.channels, s.out_h, s.out_w, channels_last);
    const int64_t h0 = adaptive_start(o.h, s.out_h, s.in_h), h1 = adaptive_end(o.h, s.out_h, s.in_h);
    const int64_t w0 = adaptive_start(o.w, s.out_w, s.in_w), w1 = adaptive_end(o.w, s.out_w, s.in_w);
    const scalar_t* plane = input + o.n * in_s.n + o.c * in_s.c;
    acc_t sum = acc_t(0);
    for (int64_t ih = h0; ih < h1; ++ih)
      for (int64_t iw = w0; iw < w1; ++iw) sum += static_cast<acc_t>(plane[ih * in_s.h + iw * in_s.w]);
    output[offset_of(out_s, o.n, o.c, o.h, o.w)] =
        static_cast<scalar_t>(sum / static_cast<acc_t>((h1 - h0) * (w1 - w0)));
  }
};

// One grad_input element per call, gathering its share from the cells whose
// windows cover it: a fixed order, no atomics.
template <typename scalar_t>
struct AdaptiveAvgBackward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  scalar_t* grad_input;
  Strides4d go_s, gi_s;
  AdaptivePool2dShape s;
  bool channels_last;  // grad_input's memory order

  static AdaptiveAvgBackward make(const at::Tensor& grad_output, const at::Tensor& grad_input,
                                  const AdaptivePool2dShape& s) {
    return {grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
            strides_of(grad_output), strides_of(grad_input), s, is_channels_last(grad_input)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d p = coord_in_memory_order(i, s.channels, s.in_h, s.in_w, channels_last);
    const TapRange oh_range = adaptive_covering_outputs(p.h, s.in_h, s.out_h);
    const TapRange ow_range = adaptive_covering_outputs(p.w, s.in_w, s.out_w);
    const scalar_t* go_plane = grad_output + p.n * go_s.n + p.c * go_s.c;
    acc_t acc = acc_t(0);
    for (int64_t oh = oh_range.first; oh < oh_range.last; ++oh) {
      const int64_t rows = adaptive_end(oh, s.out_h, s.in_h) - adaptive_start(oh, s.out_h, s.in_h);
      for (int64_t ow = ow_range.first; ow < ow_range.last; ++ow) {
        const int64_t cols = adaptive_end(ow, s.out_w, s.in_w) - adaptive_start(ow, s.out_w, s.in_w);
        acc += static_cast<acc_t>(go_plane[oh * go_s.h + ow * go_s.w]) /
               static_cast<acc_t>(rows * cols);
      }
    }
    grad_input[offset_of(gi_s, p.n, p.c, p.h, p.w)] = static_cast<scalar_t>(acc);
  }
};

}  // namespace gpu
}  // namespace pycnn
