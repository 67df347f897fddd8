// Autograd of pycnn::conv2d, conv2d_relu and conv2d's three backward ops.
// conv2d is bilinear in (input, weight), so its backward ops are linear in
// each argument, and their derivatives are conv2d and the other backward op.
#include <torch/library.h>

#include "autograd_common.h"

namespace pycnn::autograd {
namespace {

void save_conv_options(AutogradContext* ctx, at::IntArrayRef stride, at::IntArrayRef padding,
                       at::IntArrayRef dilation, int64_t groups) {
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["padding"] = padding;
  ctx->saved_data["dilation"] = dilation;
  ctx->saved_data["groups"] = groups;
}

struct ConvOptions {
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups;
};

ConvOptions saved_conv_options(const AutogradContext* ctx) {
  return {saved_ints(ctx, "stride"), saved_ints(ctx, "padding"), saved_ints(ctx, "dilation"),
          ctx->saved_data.at("groups").toInt()};
}

// What conv2d and conv2d_relu keep for their backward: sizes, options, and
// only the operands the gradients that can be asked for read (input for
// grad_weight, weight for grad_input), then `extra`.
void save_for_conv_backward(AutogradContext* ctx, const Variable& input, const Variable& weight,
                            const std::optional<Variable>& bias, at::IntArrayRef stride,
                            at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                            const Variable& extra = Variable()) {
  // bias is an input edge of the graph only when present.
  ctx->saved_data["has_bias"] = bias.has_value() && bias->defined();
  ctx->saved_data["input_size"] = input.sym_sizes();
  ctx->saved_data["weight_size"] = weight.sym_sizes();
  save_conv_options(ctx, stride, padding, dilation, groups);
  ctx->save_for_backward({weight.requires_grad() ? input : Variable(),
                          input.requires_grad() ? weight : Variable(), extra});
}

// conv2d's gradients (input, weight, bias, then the options' empty slots)
// from the gradient of its output.
variable_list conv_backward(AutogradContext* ctx, const variable_list& saved,
                            const at::Tensor& grad_output) {
  const ConvOptions o = saved_conv_options(ctx);
  variable_list result(7);
  if (ctx->needs_input_grad(0))
    result[0] = ops::conv2d_input_backward(grad_output, saved[1], saved_sizes(ctx, "input_size"),
                                           o.stride, o.padding, o.dilation, o.groups);
  if (ctx->needs_input_grad(1))
    result[1] = ops::conv2d_weight_backward(grad_output, saved[0], saved_sizes(ctx, "weight_size"),
                                            o.stride, o.padding, o.dilation, o.groups);
  if (ctx->saved_data.at("has_bias").toBool() && ctx->needs_input_grad(2))
    result[2] = ops::conv2d_bias_backward(grad_output);
  return result;
}

class Conv2dFunction : public torch::autograd::Function<Conv2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input, const Variable& weight,
                               const std::optional<Variable>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    save_for_conv_backward(ctx, input, weight, bias, stride, padding, dilation, groups);
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::conv2d(input, weight, bias, stride, padding, dilation, groups)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return conv_backward(ctx, ctx->get_saved_variables(), grads[0]);
  }
};

// relu(conv2d(...)): the gradient flows where the output is positive (as
// torch's ReLU: threshold_backward on the output), then as conv2d's.
class Conv2dReluFunction : public torch::autograd::Function<Conv2dReluFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input, const Variable& weight,
                               const std::optional<Variable>& bias, at::IntArrayRef stride,
                               at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
    at::Tensor output;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      output = ops::conv2d_relu(input, weight, bias, stride, padding, dilation, groups);
    }
    save_for_conv_backward(ctx, input, weight, bias, stride, padding, dilation, groups, output);
    return {output};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    return conv_backward(ctx, saved, at::threshold_backward(grads[0], saved[2], 0));
  }
};

class Conv2dInputBackwardFunction
    : public torch::autograd::Function<Conv2dInputBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               const Variable& weight, c10::SymIntArrayRef input_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
    ctx->saved_data["weight_size"] = weight.sym_sizes();
    save_conv_options(ctx, stride, padding, dilation, groups);
    ctx->save_for_backward({grad_output, weight});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::conv2d_input_backward(grad_output, weight, input_size, stride, padding, dilation,
                                       groups)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ConvOptions o = saved_conv_options(ctx);
    const at::Tensor& grad_grad_input = grads[0];
    variable_list result(7);
    if (ctx->needs_input_grad(0))
      result[0] = ops::conv2d(grad_grad_input, saved[1], std::nullopt, o.stride, o.padding,
                              o.dilation, o.groups);
    if (ctx->needs_input_grad(1))
      result[1] = ops::conv2d_weight_backward(saved[0], grad_grad_input,
                                              saved_sizes(ctx, "weight_size"), o.stride,
                                              o.padding, o.dilation, o.groups);
    return result;
  }
};

class Conv2dWeightBackwardFunction
    : public torch::autograd::Function<Conv2dWeightBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               const Variable& input, c10::SymIntArrayRef weight_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, int64_t groups) {
    ctx->saved_data["input_size"] = input.sym_sizes();
    save_conv_options(ctx, stride, padding, dilation, groups);
    ctx->save_for_backward({grad_output, input});
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::conv2d_weight_backward(grad_output, input, weight_size, stride, padding, dilation,
                                        groups)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const ConvOptions o = saved_conv_options(ctx);
    const at::Tensor& grad_grad_weight = grads[0];
    variable_list result(7);
    if (ctx->needs_input_grad(0))
      result[0] = ops::conv2d(saved[1], grad_grad_weight, std::nullopt, o.stride, o.padding,
                              o.dilation, o.groups);
    if (ctx->needs_input_grad(1))
      result[1] = ops::conv2d_input_backward(saved[0], grad_grad_weight,
                                             saved_sizes(ctx, "input_size"), o.stride, o.padding,
                                             o.dilation, o.groups);
    return result;
  }
};

class Conv2dBiasBackwardFunction : public torch::autograd::Function<Conv2dBiasBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output) {
    ctx->saved_data["grad_output_size"] = grad_output.sym_sizes();
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::conv2d_bias_backward(grad_output)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    return {grads[0].view({1, -1, 1, 1}).expand_symint(saved_sizes(ctx, "grad_output_size"))};
  }
};

at::Tensor conv2d_autograd(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                           at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d(input, weight, bias, stride, padding, dilation, groups);
  }
  return Conv2dFunction::apply(input, weight, bias, stride, padding, dilation, groups)[0];
}

at::Tensor conv2d_relu_autograd(const at::Tensor& input, const at::Tensor& weight,
                                const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                                at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(input, weight, bias)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_relu(input, weight, bias, stride, padding, dilation, groups);
  }
  return Conv2dReluFunction::apply(input, weight, bias, stride, padding, dilation, groups)[0];
}

at::Tensor conv2d_input_backward_autograd(const at::Tensor& grad_output, const at::Tensor& weight,
                                          c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                          at::IntArrayRef padding, at::IntArrayRef dilation,
                                          int64_t groups) {
  if (!records_graph(grad_output, weight)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_input_backward(grad_output, weight, input_size, stride, padding, dilation,
                                      groups);
  }
  return Conv2dInputBackwardFunction::apply(grad_output, weight, input_size, stride, padding,
                                            dilation, groups)[0];
}

at::Tensor conv2d_weight_backward_autograd(const at::Tensor& grad_output, const at::Tensor& input,
                                           c10::SymIntArrayRef weight_size,
                                           at::IntArrayRef stride, at::IntArrayRef padding,
                                           at::IntArrayRef dilation, int64_t groups) {
  if (!records_graph(grad_output, input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_weight_backward(grad_output, input, weight_size, stride, padding, dilation,
                                       groups);
  }
  return Conv2dWeightBackwardFunction::apply(grad_output, input, weight_size, stride, padding,
                                             dilation, groups)[0];
}

at::Tensor conv2d_bias_backward_autograd(const at::Tensor& grad_output) {
  if (!records_graph(grad_output)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::conv2d_bias_backward(grad_output);
  }
  return Conv2dBiasBackwardFunction::apply(grad_output)[0];
}

}  // namespace
}  // namespace pycnn::autograd

TORCH_LIBRARY_IMPL(pycnn, Autograd, m) {
  using namespace pycnn::autograd;
  m.impl("conv2d", &conv2d_autograd);
  m.impl("conv2d_input_backward", &conv2d_input_backward_autograd);
  m.impl("conv2d_weight_backward", &conv2d_weight_backward_autograd);
  m.impl("conv2d_bias_backward", &conv2d_bias_backward_autograd);
  m.impl("conv2d_relu", &conv2d_relu_autograd);
}
