// Fast max and adaptive max pooling (pool2d_fast.cuh), forward and backward.
#include <c10/cuda/CUDAStream.h>

#include "../settings.h"
#include "pool2d_cuda.h"
#include "pool2d_fast_plan.cuh"

namespace pycnn {
namespace gpu {
namespace {

bool fast_kernels_on() { return cuda_kernels() == kCudaKernelsAuto; }

}  // namespace

bool max_pool2d_fast(const at::Tensor& input, const at::Tensor& output, const at::Tensor& indices,
                     const Pool2dShape& s) {
  if (!window_fits(s)) return false;
  const PoolPlan plan = fast_kernels_on()
                          ? plan_pool(output, {&input, &output, &indices})
                          : PoolPlan{};
  if (!plan.ok) return false;
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    const MaxPoolForwardFast<T, V> op{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                      indices.mutable_data_ptr<int64_t>(), item_layout(output, plan),
                                      int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w),
                                      window32(s)};
    launch_items(op, pool_items(output, plan), c10::cuda::getCurrentCUDAStream());
  });
  return true;
}

bool max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                              const at::Tensor& grad_input, const Pool2dShape& s) {
  if (!window_fits(s)) return false;
  const PoolPlan plan = fast_kernels_on()
                          ? plan_pool(grad_input, {&grad_output, &indices, &grad_input})
                          : PoolPlan{};
  if (!plan.ok) return false;
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    const MaxPoolBackwardFast<T, V> op{grad_output.const_data_ptr<T>(), indices.const_data_ptr<int64_t>(),
                                       grad_input.mutable_data_ptr<T>(), item_layout(grad_input, plan),
                                       int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w),
                                       window32(s)};
    launch_items(op, pool_items(grad_input, plan), c10::cuda::getCurrentCUDAStream());
  });
  return true;
}

bool adaptive_max_pool2d_fast(const at::Tensor& input, const at::Tensor& output,
                              const at::Tensor& indices, const AdaptivePool2dShape& s) {
  if (!adaptive_fits(s)) return false;
  const PoolPlan plan = fast_kernels_on()
                          ? plan_pool(output, {&input, &output, &indices})
                          : PoolPlan{};
  if (!plan.ok) return false;
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    const AdaptiveMaxForwardFast<T, V> op{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                          indices.mutable_data_ptr<int64_t>(),
                                          item_layout(output, plan), int(s.in_h), int(s.in_w),
                                          int(s.out_h), int(s.out_w)};
    launch_items(op, pool_items(output, plan), c10::cuda::getCurrentCUDAStream());
  });
  return true;
}

bool adaptive_max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                                       const at::Tensor& grad_input, const AdaptivePool2dShape& s) {
  if (!adaptive_fits(s)) return false;
  const PoolPlan plan = fast_kernels_on()
                          ? plan_pool(grad_input, {&grad_output, &indices, &grad_input})
                          : PoolPlan{};
  if (!plan.ok) return false;
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    const AdaptiveMaxBackwardFast<T, V> op{grad_output.const_data_ptr<T>(),
                                           indices.const_data_ptr<int64_t>(),
                                           grad_input.mutable_data_ptr<T>(),
                                           item_layout(grad_input, plan), int(s.in_h), int(s.in_w),
                                           int(s.out_h), int(s.out_w)};
    launch_items(op, pool_items(grad_input, plan), c10::cuda::getCurrentCUDAStream());
  });
  return true;
}

}  // namespace gpu
}  // namespace pycnn
