// The GPU's Launcher for conv2d_fast.cuh: scratch tensors on the current
// device, kernels on the current stream.
#pragma once

#include <ATen/ops/empty.h>

#include <atomic>

#include "conv2d_fast.cuh"
#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

struct DeviceLauncher {
  at::Device device;
  cudaStream_t stream;

  explicit DeviceLauncher(const at::Tensor& like)
      : device(like.device()), stream(c10::cuda::getCurrentCUDAStream()) {}

  int sm_count() const {
    static std::atomic<int> counts[64] = {};
    const int index = device.index() & 63;
    int n = counts[index].load();
    if (n == 0) {
      C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device.index()));
      counts[index].store(n);
    }
    return n;
  }

  at::Tensor empty(at::IntArrayRef sizes, at::ScalarType dtype) const {
    // Stream-ordered: the caching allocator reuses it only after these kernels.
    return at::empty(sizes, at::TensorOptions().dtype(dtype).device(device));
  }

  template <class Op>
  void elementwise(const Op& op, int64_t count) const {
    launch_elementwise(op, count, stream);
  }

  template <class Block>
  void igemm(const typename Block::Params& p, dim3 grid) const {
    launch_igemm<Block>(p, grid, stream);
  }
};

// One kernel family's three products (instantiated in conv2d_fast_<family>.cu).
#define PYCNN_DEFINE_FAST_CONV(family, Kernels)                                                  \
  void conv2d_forward_##family(const at::Tensor& input, const at::Tensor& weight,                \
                               const at::Tensor& bias, const at::Tensor& output,                 \
                               const Conv2dShape& s, int tile, bool relu) {                      \
    DeviceLauncher launcher(input);                                                               \
    conv_forward_fast<Kernels>(input, weight, bias, output, s, launcher, tile, relu);             \
  }                                                                                               \
  void conv2d_input_backward_##family(const at::Tensor& grad_output, const at::Tensor& weight,   \
                                      const at::Tensor& grad_input, const Conv2dShape& s,        \
                                      int tile) {                                                 \
    DeviceLauncher launcher(grad_output);                                                         \
    conv_input_backward_fast<Kernels>(grad_output, weight, grad_input, s, launcher, tile);        \
  }                                                                                               \
  void conv2d_weight_backward_##family(const at::Tensor& grad_output, const at::Tensor& input,   \
                                       const at::Tensor& grad_weight, const Conv2dShape& s,      \
                                       int tile) {                                                \
    DeviceLauncher launcher(grad_output);                                                         \
    conv_weight_backward_fast<Kernels>(grad_output, input, grad_weight, s, launcher, tile);       \
  }

}  // namespace gpu
}  // namespace pycnn
