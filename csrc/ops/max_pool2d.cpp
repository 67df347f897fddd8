// Schemas of pycnn::max_pool2d_with_indices, its backward and
// pycnn::max_pool2d (the values alone: where no graph is recorded its kernels
// skip the indices' stores; where one is, its autograd runs
// max_pool2d_with_indices and keeps the indices for the backward), and their
// C++ callers (ops.h).  Indices are flat positions h * W + w inside each
// input plane, as torch returns them.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "ops.h"

namespace pycnn {

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def(
      "max_pool2d_with_indices(Tensor input, int[2] kernel_size, int[2] stride=[], "
      "int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> (Tensor, Tensor)",
      tags);
  m.def(
      "max_pool2d(Tensor input, int[2] kernel_size, int[2] stride=[], int[2] padding=0, "
      "int[2] dilation=1, bool ceil_mode=False) -> Tensor",
      tags);
  m.def(
      "max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size, "
      "int[2] kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode) "
      "-> Tensor",
      tags);
}

namespace ops {

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(
    const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
  return PYCNN_OP_HANDLE(max_pool2d_with_indices)
      .call(input, kernel_size, stride, padding, dilation, ceil_mode);
}

at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                      bool ceil_mode) {
  return PYCNN_OP_HANDLE(max_pool2d).call(input, kernel_size, stride, padding, dilation, ceil_mode);
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                               c10::SymIntArrayRef input_size, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  return PYCNN_OP_HANDLE(max_pool2d_backward)
      .call(grad_output, indices, input_size, kernel_size, stride, padding, dilation, ceil_mode);
}

}  // namespace ops

}  // namespace pycnn
