// Element strides of a 4-D tensor in (N, C, H, W) order, whatever its memory
// layout: CPU kernels index through these, so contiguous, channels_last and
// sliced views all take the same code path.
#pragma once

#include <ATen/core/Tensor.h>

namespace pycnn {

struct Strides4 {
  int64_t n, c, h, w;
  explicit Strides4(const at::Tensor& t)
      : n(t.stride(0)), c(t.stride(1)), h(t.stride(2)), w(t.stride(3)) {}
};

}  // namespace pycnn
