// Schemas of pycnn::adaptive_max_pool2d and its backward, and their C++
// callers (ops.h).  Indices are flat positions h * W + w inside each input
// plane, as torch returns them.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "ops.h"

namespace pycnn {

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def("adaptive_max_pool2d(Tensor input, int[2] output_size) -> (Tensor, Tensor)", tags);
  m.def(
      "adaptive_max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size) "
      "-> Tensor",
      tags);
}

namespace ops {

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d(const at::Tensor& input,
                                                       at::IntArrayRef output_size) {
  return PYCNN_OP_HANDLE(adaptive_max_pool2d).call(input, output_size);
}

at::Tensor adaptive_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                        c10::SymIntArrayRef input_size) {
  return PYCNN_OP_HANDLE(adaptive_max_pool2d_backward).call(grad_output, indices, input_size);
}

}  // namespace ops

}  // namespace pycnn
