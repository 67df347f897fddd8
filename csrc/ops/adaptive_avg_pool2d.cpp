// Schemas of pycnn::adaptive_avg_pool2d and its backward, and their C++ callers (ops.h).
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "ops.h"

namespace pycnn {

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def("adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor", tags);
  m.def("adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size) -> Tensor", tags);
}

namespace ops {

at::Tensor adaptive_avg_pool2d(const at::Tensor& input, at::IntArrayRef output_size) {
  return PYCNN_OP_HANDLE(adaptive_avg_pool2d).call(input, output_size);
}

at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output,
                                        c10::SymIntArrayRef input_size) {
  return PYCNN_OP_HANDLE(adaptive_avg_pool2d_backward).call(grad_output, input_size);
}

}  // namespace ops

}  // namespace pycnn
