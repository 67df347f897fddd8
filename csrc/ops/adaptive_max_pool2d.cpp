// Schemas of pycnn::adaptive_max_pool2d and its backward.  Indices are flat
// positions h * W + w inside each input plane, as torch returns them.
#include <torch/library.h>

namespace pycnn {

TORCH_LIBRARY_FRAGMENT(pycnn, m) {
  const std::vector<at::Tag> tags{at::Tag::pt2_compliant_tag};
  m.def("adaptive_max_pool2d(Tensor input, int[2] output_size) -> (Tensor, Tensor)", tags);
  m.def(
      "adaptive_max_pool2d_backward(Tensor grad_output, Tensor indices, SymInt[4] input_size) "
      "-> Tensor",
      tags);
}

}  // namespace pycnn
