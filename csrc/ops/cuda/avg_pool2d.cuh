// avg_pool2d's CUDA kernels as elementwise functors (cuda_common.cuh).
#pragma once

#include <ATen/AccumulateType.h>
#include <ATen/core/Tensor.h>

#include "../common.h"
#include "../pool2d.h"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

struct AvgPoolOptions {
  bool count_include_pad;
  int64_t divisor_override;  // 0: none (the checks reject an explicit 0)
};

// One output element per call.
template <typename scalar_t>
struct AvgPoolForward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* input;
  scalar_t* output;
  Strides4d in_s, out_s;
  Pool2dShape s;
  AvgPoolOptions opt;
  bool channels_last;  // the output's memory order

  static AvgPoolForward make(const at::Tensor& input, const at::Tensor& output,
                             const Pool2dShape& s, AvgPoolOptions opt) {
    return {input.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(),
            strides_of(input), strides_of(output), s, opt, is_channels_last(output)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d o = coord_in_memory_order(i, s.channels, s.out_h, s.out_w, channels_last);
    const AvgWindow wh = avg_pool_window(o.h, s.in_h, s.kernel_h, s.stride_h, s.pad_h);
    const AvgWindow ww = avg_pool_window(o.w, s.in_w, s.kernel_w, s.stride_w, s.pad_w);
    const scalar_t* plane = input + o.n * in_s.n + o.c * in_s.c;
    acc_t sum = acc_t(0);
    for (int64_t ih = wh.begin; ih < wh.end; ++ih)
      for (int64_t iw = ww.begin; iw < ww.end; ++iw)
        sum += static_cast<acc_t>(plane[ih * in_s.h + iw * in_s.w]);
    const int64_t divisor = avg_pool_divisor(wh, ww, opt.count_include_pad, opt.divisor_override);
    if (divisor != 0) sum /= static_cast<acc_t>(divisor);
    output[offset_of(out_s, o.n, o.c, o.h, o.w)] = static_cast<scalar_t>(sum);
  }
};

// One grad_input element per call, gathering its share from every window
// that covers it: a fixed order, no atomics.
template <typename scalar_t>
struct AvgPoolBackward {
  using acc_t = at::acc_type<scalar_t, true>;
  const scalar_t* grad_output;
  scalar_t* grad_input;
  Strides4d go_s, gi_s;
  Pool2dShape s;
  AvgPoolOptions opt;
  bool channels_last;  // grad_input's memory order

  static AvgPoolBackward make(const at::Tensor& grad_output, const at::Tensor& grad_input,
                              const Pool2dShape& s, AvgPoolOptions opt) {
    return {grad_output.const_data_ptr<scalar_t>(), grad_input.mutable_data_ptr<scalar_t>(),
            strides_of(grad_output), strides_of(grad_input), s, opt,
            is_channels_last(grad_input)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t i) const {
    const Coord4d p = coord_in_memory_order(i, s.channels, s.in_h, s.in_w, channels_last);
    // A window covers p exactly when its unclipped span does (dilation 1).
    const TapRange oh_range = covering_outputs(p.h, s.out_h, s.kernel_h, s.stride_h, s.pad_h, 1);
    const TapRange ow_range = covering_outputs(p.w, s.out_w, s.kernel_w, s.stride_w, s.pad_w, 1);
    const scalar_t* go_plane = grad_output + p.n * go_s.n + p.c * go_s.c;
    acc_t acc = acc_t(0);
    for (int64_t oh = oh_range.first; oh < oh_range.last; ++oh) {
      const AvgWindow wh = avg_pool_window(oh, s.in_h, s.kernel_h, s.stride_h, s.pad_h);
      for (int64_t ow = ow_range.first; ow < ow_range.last; ++ow) {
        const AvgWindow ww = avg_pool_window(ow, s.in_w, s.kernel_w, s.stride_w, s.pad_w);
        const int64_t divisor =
            avg_pool_divisor(wh, ww, opt.count_include_pad, opt.divisor_override);
        acc_t share = static_cast<acc_t>(go_plane[oh * go_s.h + ow * go_s.w]);
        if (divisor != 0) share /= static_cast<acc_t>(divisor);
        acc += share;
      }
    }
    grad_input[offset_of(gi_s, p.n, p.c, p.h, p.w)] = static_cast<scalar_t>(acc);
  }
};

}  // namespace gpu
}  // namespace pycnn
