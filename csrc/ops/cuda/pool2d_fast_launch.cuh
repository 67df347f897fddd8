// Launches one fast pooling functor (pool2d_fast.cuh) on the current stream;
// shared by pool2d_fast_max.cu and pool2d_fast_avg.cu.
#pragma once

#include <c10/cuda/CUDAStream.h>

#include <initializer_list>

#include "../settings.h"
#include "pool2d_fast_plan.cuh"

namespace pycnn {
namespace gpu {

// make_op(T{}, VectorWidth<V>{}, layout) builds the functor for the plan's
// dtype and vector width, its items laid over `written`.  Returns false,
// launching nothing, where the fast kernels do not apply: `fits` false (the
// options or sizes pass int32), the reference kernels chosen, or a tensor of
// `all` not dense in `written`'s layout.
template <class MakeOp>
bool launch_fast_pool(const at::Tensor& written, std::initializer_list<const at::Tensor*> all,
                      bool fits, MakeOp&& make_op) {
  if (!fits || cuda_kernels() == kCudaKernelsReference) return false;
  const PoolPlan plan = plan_pool(written, all);
  if (!plan.ok) return false;
  dispatch_pool(written, plan, [&](auto type, auto width) {
    launch_items(make_op(type, width, item_layout(written, plan)), pool_items(written, plan),
                 c10::cuda::getCurrentCUDAStream());
  });
  return true;
}

}  // namespace gpu
}  // namespace pycnn
