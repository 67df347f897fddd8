// Fast max and adaptive max pooling (pool2d_fast.cuh), forward and backward.
#include "pool2d_cuda.h"
#include "pool2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {

bool max_pool2d_fast(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                     const Pool2dShape& s) {
  return launch_fast_pool(output, {&input, &output, &indices}, window_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return MaxPoolForwardFast<T, decltype(width)::value>{
        input.const_data_ptr<T>(), output.mutable_data_ptr<T>(), indices.mutable_data_ptr<int64_t>(),
        layout, int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w), window32(s)};
  });
}

bool max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                              const at::Tensor& grad_input, const Pool2dShape& s) {
  return launch_fast_pool(grad_input, {&grad_output, &indices, &grad_input}, window_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return MaxPoolBackwardFast<T, decltype(width)::value>{
        grad_output.const_data_ptr<T>(), indices.const_data_ptr<int64_t>(),
        grad_input.mutable_data_ptr<T>(), layout, int(s.in_h), int(s.in_w), int(s.out_h),
        int(s.out_w), window32(s)};
  });
}

bool adaptive_max_pool2d_fast(const at::Tensor& input, const at::Tensor& output,
                              const at::Tensor& indices, const AdaptivePool2dShape& s) {
  return launch_fast_pool(output, {&input, &output, &indices}, adaptive_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AdaptiveMaxForwardFast<T, decltype(width)::value>{
        input.const_data_ptr<T>(), output.mutable_data_ptr<T>(), indices.mutable_data_ptr<int64_t>(),
        layout, int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w)};
  });
}

bool adaptive_max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                                       const at::Tensor& grad_input, const AdaptivePool2dShape& s) {
  return launch_fast_pool(grad_input, {&grad_output, &indices, &grad_input}, adaptive_fits(s),
                          [&](auto type, auto width, const ItemLayout& layout) {
    using T = decltype(type);
    return AdaptiveMaxBackwardFast<T, decltype(width)::value>{
        grad_output.const_data_ptr<T>(), indices.const_data_ptr<int64_t>(),
        grad_input.mutable_data_ptr<T>(), layout, int(s.in_h), int(s.in_w), int(s.out_h),
        int(s.out_w)};
  });
}

}  // namespace gpu
}  // namespace pycnn
