// Schemas of pycnn::adaptive_avg_pool2d and its backward.
#include <torch/library.h>

namespace pycnn {

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def("adaptive_avg_pool2d(Tensor input, int[2] output_size) -> Tensor", tags);
  m.def("adaptive_avg_pool2d_backward(Tensor grad_output, SymInt[4] input_size) -> Tensor", tags);
}

}  // namespace pycnn
