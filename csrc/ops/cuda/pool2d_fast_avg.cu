// Fast average and adaptive average pooling (pool2d_fast.cuh), forward and
// backward.
#include "pool2d_cuda.h"
#include "pool2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {
namespace {

bool options_fit(const Pool2dShape& s, int64_t divisor_override) {
  return window_fits(s) && divisor_override >= 0 && divisor_override <= kInt32Limit;
}

}  // namespace

bool avg_pool2d_fast(const at::Tensor& input, const at::Tensor& output, const Pool2dShape& s,
                     bool count_include_pad, int64_t divisor_override) {
  return launch_fast_pool(output, {&input, &output}, options_fit(s, divisor_override),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AvgPoolForwardFast<T, decltype(width)::value>{
        input.const_data_ptr<T>(), output.mutable_data_ptr<T>(), layout, int(s.in_h), int(s.in_w),
        int(s.out_h), int(s.out_w), window32(s), {count_include_pad, int(divisor_override)}};
  });
}

bool avg_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& grad_input,
                              const Pool2dShape& s, bool count_include_pad,
                              int64_t divisor_override) {
  return launch_fast_pool(grad_input, {&grad_output, &grad_input}, options_fit(s, divisor_override),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AvgPoolBackwardFast<T, decltype(width)::value>{
        grad_output.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>(), layout, int(s.in_h),
        int(s.in_w), int(s.out_h), int(s.out_w), window32(s),
        {count_include_pad, int(divisor_override)}};
  });
}

bool adaptive_avg_pool2d_fast(const at::Tensor& input, const at::Tensor& output,
                              const AdaptivePool2dShape& s) {
  return launch_fast_pool(output, {&input, &output}, adaptive_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AdaptiveAvgForwardFast<T, decltype(width)::value>{
        input.const_data_ptr<T>(), output.mutable_data_ptr<T>(), layout, int(s.in_h), int(s.in_w),
        int(s.out_h), int(s.out_w)};
  });
}

bool adaptive_avg_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& grad_input,
                                       const AdaptivePool2dShape& s) {
  return launch_fast_pool(grad_input, {&grad_output, &grad_input}, adaptive_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AdaptiveAvgBackwardFast<T, decltype(width)::value>{
        grad_output.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>(), layout, int(s.in_h),
        int(s.in_w), int(s.out_h), int(s.out_w)};
  });
}

}  // namespace gpu
}  // namespace pycnn
