// The activation a convolution can fuse into its epilogue (pycnn::conv2d_relu),
// one definition for the CPU and CUDA kernels.
#pragma once

#include "../shape.h"

namespace pycnn {

// torch.relu's value: max(v, 0), with NaN kept (a comparison with NaN is false).
template <typename T>
PYCNN_HOST_DEVICE inline T relu_value(T v) {
  return v < T(0) ? T(0) : v;
}

// relu_value over a buffer: the CPU kernels' accumulator tiles, while in cache.
template <typename T>
inline void apply_relu(T* data, int64_t count) {
  for (int64_t i = 0; i < count; ++i) data[i] = relu_value(data[i]);
}

}  // namespace pycnn
