// Autograd of pycnn::adaptive_avg_pool2d and its backward (linear, like
// avg_pool2d: the derivative of the backward is the forward).
#include <torch/library.h>

#include "autograd_common.h"

namespace pycnn::autograd {
namespace {

class AdaptiveAvgPool2dFunction : public torch::autograd::Function<AdaptiveAvgPool2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input,
                               at::IntArrayRef output_size) {
    ctx->saved_data["input_size"] = input.sym_sizes();
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::adaptive_avg_pool2d(input, output_size)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {ops::adaptive_avg_pool2d_backward(grads[0], saved_sizes(ctx, "input_size")),
            Variable()};
  }
};

class AdaptiveAvgPool2dBackwardFunction
    : public torch::autograd::Function<AdaptiveAvgPool2dBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               c10::SymIntArrayRef input_size) {
    ctx->saved_data["output_size"] = grad_output.sym_sizes().slice(2);
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::adaptive_avg_pool2d_backward(grad_output, input_size)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    std::vector<int64_t> output_size;
    for (const c10::SymInt& size : saved_sizes(ctx, "output_size"))
      output_size.push_back(size.guard_int(__FILE__, __LINE__));
    return {ops::adaptive_avg_pool2d(grads[0], output_size), Variable()};
  }
};

at::Tensor adaptive_avg_pool2d_autograd(const at::Tensor& input, at::IntArrayRef output_size) {
  if (!records_graph(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::adaptive_avg_pool2d(input, output_size);
  }
  return AdaptiveAvgPool2dFunction::apply(input, output_size)[0];
}

at::Tensor adaptive_avg_pool2d_backward_autograd(const at::Tensor& grad_output,
                                                 c10::SymIntArrayRef input_size) {
  if (!records_graph(grad_output)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::adaptive_avg_pool2d_backward(grad_output, input_size);
  }
  return AdaptiveAvgPool2dBackwardFunction::apply(grad_output, input_size)[0];
}

}  // namespace
}  // namespace pycnn::autograd

TORCH_LIBRARY_IMPL(pycnn, Autograd, m) {
  using namespace pycnn::autograd;
  m.impl("adaptive_avg_pool2d", &adaptive_avg_pool2d_autograd);
  m.impl("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward_autograd);
}
