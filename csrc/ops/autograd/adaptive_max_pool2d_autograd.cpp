// Autograd of pycnn::adaptive_max_pool2d and its backward.
#include <torch/library.h>

#include "autograd_common.h"

namespace pycnn::autograd {
namespace {

class AdaptiveMaxPool2dFunction : public torch::autograd::Function<AdaptiveMaxPool2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input,
                               at::IntArrayRef output_size) {
    ctx->saved_data["input_size"] = input.sym_sizes();
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, indices] = ops::adaptive_max_pool2d(input, output_size);
    ctx->save_for_backward({indices});
    ctx->mark_non_differentiable({indices});
    ctx->set_materialize_grads(false);  // as in MaxPool2dFunction
    return {output, indices};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Variable(), Variable()};
    return {ops::adaptive_max_pool2d_backward(grads[0], ctx->get_saved_variables()[0],
                                              saved_sizes(ctx, "input_size")),
            Variable()};
  }
};

class AdaptiveMaxPool2dBackwardFunction
    : public torch::autograd::Function<AdaptiveMaxPool2dBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               const Variable& indices, c10::SymIntArrayRef input_size) {
    ctx->save_for_backward({indices});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::adaptive_max_pool2d_backward(grad_output, indices, input_size)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {gather_at_indices(grads[0], ctx->get_saved_variables()[0]), Variable(), Variable()};
  }
};

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_autograd(const at::Tensor& input,
                                                                at::IntArrayRef output_size) {
  if (!records_graph(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::adaptive_max_pool2d(input, output_size);
  }
  auto outputs = AdaptiveMaxPool2dFunction::apply(input, output_size);
  return {outputs[0], outputs[1]};
}

at::Tensor adaptive_max_pool2d_backward_autograd(const at::Tensor& grad_output,
                                                 const at::Tensor& indices,
                                                 c10::SymIntArrayRef input_size) {
  if (!records_graph(grad_output, indices)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::adaptive_max_pool2d_backward(grad_output, indices, input_size);
  }
  return AdaptiveMaxPool2dBackwardFunction::apply(grad_output, indices, input_size)[0];
}

}  // namespace
}  // namespace pycnn::autograd

TORCH_LIBRARY_IMPL(pycnn, Autograd, m) {
  using namespace pycnn::autograd;
  m.impl("adaptive_max_pool2d", &adaptive_max_pool2d_autograd);
  m.impl("adaptive_max_pool2d_backward", &adaptive_max_pool2d_backward_autograd);
}
