// Autograd of pycnn::max_pool2d_with_indices, pycnn::max_pool2d and the
// backward.
#include <torch/library.h>

#include "autograd_common.h"

namespace pycnn::autograd {
namespace {

class MaxPool2dFunction : public torch::autograd::Function<MaxPool2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
    ctx->saved_data["input_size"] = input.sym_sizes();
    ctx->saved_data["kernel_size"] = kernel_size;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["ceil_mode"] = ceil_mode;
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [output, indices] =
        ops::max_pool2d_with_indices(input, kernel_size, stride, padding, dilation, ceil_mode);
    ctx->save_for_backward({indices});
    ctx->mark_non_differentiable({indices});
    // Otherwise autograd fills an int64 tensor of zeros, as large as the
    // output, for the indices' gradient on every backward, and never reads it.
    ctx->set_materialize_grads(false);
    return {output, indices};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(6);
    if (!grads[0].defined()) return result;  // only the indices were used
    const bool ceil_mode = ctx->saved_data.at("ceil_mode").toBool();
    result[0] = ops::max_pool2d_backward(
        grads[0], ctx->get_saved_variables()[0], saved_sizes(ctx, "input_size"),
        saved_ints(ctx, "kernel_size"), saved_ints(ctx, "stride"), saved_ints(ctx, "padding"),
        saved_ints(ctx, "dilation"), ceil_mode);
    return result;
  }
};

class MaxPool2dBackwardFunction : public torch::autograd::Function<MaxPool2dBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               const Variable& indices, c10::SymIntArrayRef input_size,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode) {
    ctx->save_for_backward({indices});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride, padding,
                                     dilation, ceil_mode)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(8);
    result[0] = gather_at_indices(grads[0], ctx->get_saved_variables()[0]);
    return result;
  }
};

std::tuple<at::Tensor, at::Tensor> max_pool2d_autograd(const at::Tensor& input,
                                                       at::IntArrayRef kernel_size,
                                                       at::IntArrayRef stride,
                                                       at::IntArrayRef padding,
                                                       at::IntArrayRef dilation, bool ceil_mode) {
  if (!records_graph(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::max_pool2d_with_indices(input, kernel_size, stride, padding, dilation,
                                        ceil_mode);
  }
  auto outputs = MaxPool2dFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode);
  return {outputs[0], outputs[1]};
}

// The values alone: without a graph to record, the kernels skip the
// indices; with one, the same node as max_pool2d_with_indices (the indices
// are saved for the backward, not returned).
at::Tensor max_pool2d_values_autograd(const at::Tensor& input, at::IntArrayRef kernel_size,
                                      at::IntArrayRef stride, at::IntArrayRef padding,
                                      at::IntArrayRef dilation, bool ceil_mode) {
  if (!records_graph(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode);
  }
  return MaxPool2dFunction::apply(input, kernel_size, stride, padding, dilation, ceil_mode)[0];
}

at::Tensor max_pool2d_backward_autograd(const at::Tensor& grad_output, const at::Tensor& indices,
                                        c10::SymIntArrayRef input_size,
                                        at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                        at::IntArrayRef padding, at::IntArrayRef dilation,
                                        bool ceil_mode) {
  if (!records_graph(grad_output, indices)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::max_pool2d_backward(grad_output, indices, input_size, kernel_size, stride,
                                    padding, dilation, ceil_mode);
  }
  return MaxPool2dBackwardFunction::apply(grad_output, indices, input_size, kernel_size, stride,
                                          padding, dilation, ceil_mode)[0];
}

}  // namespace
}  // namespace pycnn::autograd

TORCH_LIBRARY_IMPL(pycnn, Autograd, m) {
  using namespace pycnn::autograd;
  m.impl("max_pool2d_with_indices", &max_pool2d_autograd);
  m.impl("max_pool2d", &max_pool2d_values_autograd);
  m.impl("max_pool2d_backward", &max_pool2d_backward_autograd);
}
