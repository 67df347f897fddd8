// Autograd of pycnn::avg_pool2d and its backward.  avg_pool2d is linear, so
// the derivative of its backward is avg_pool2d itself.
#include <torch/library.h>

#include "autograd_common.h"

namespace pycnn::autograd {
namespace {

void save_avg_options(AutogradContext* ctx, at::IntArrayRef kernel_size, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      std::optional<int64_t> divisor_override) {
  ctx->saved_data["kernel_size"] = kernel_size;
  ctx->saved_data["stride"] = stride;
  ctx->saved_data["padding"] = padding;
  ctx->saved_data["ceil_mode"] = ceil_mode;
  ctx->saved_data["count_include_pad"] = count_include_pad;
  ctx->saved_data["divisor_override"] = divisor_override;
}

std::optional<int64_t> saved_divisor_override(const AutogradContext* ctx) {
  const c10::IValue& value = ctx->saved_data.at("divisor_override");
  return value.isNone() ? std::nullopt : std::optional<int64_t>(value.toInt());
}

class AvgPool2dFunction : public torch::autograd::Function<AvgPool2dFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& input,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                               std::optional<int64_t> divisor_override) {
    ctx->saved_data["input_size"] = input.sym_sizes();
    save_avg_options(ctx, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override);
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                            divisor_override)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(7);
    result[0] = ops::avg_pool2d_backward(
        grads[0], saved_sizes(ctx, "input_size"), saved_ints(ctx, "kernel_size"),
        saved_ints(ctx, "stride"), saved_ints(ctx, "padding"),
        ctx->saved_data.at("ceil_mode").toBool(), ctx->saved_data.at("count_include_pad").toBool(),
        saved_divisor_override(ctx));
    return result;
  }
};

class AvgPool2dBackwardFunction : public torch::autograd::Function<AvgPool2dBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Variable& grad_output,
                               c10::SymIntArrayRef input_size, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
    save_avg_options(ctx, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override);
    at::AutoDispatchBelowADInplaceOrView guard;
    return {ops::avg_pool2d_backward(grad_output, input_size, kernel_size, stride, padding,
                                     ceil_mode, count_include_pad, divisor_override)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(8);
    result[0] = ops::avg_pool2d(grads[0], saved_ints(ctx, "kernel_size"),
                                saved_ints(ctx, "stride"), saved_ints(ctx, "padding"),
                                ctx->saved_data.at("ceil_mode").toBool(),
                                ctx->saved_data.at("count_include_pad").toBool(),
                                saved_divisor_override(ctx));
    return result;
  }
};

at::Tensor avg_pool2d_autograd(const at::Tensor& input, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                               bool count_include_pad, std::optional<int64_t> divisor_override) {
  if (!records_graph(input)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                           divisor_override);
  }
  return AvgPool2dFunction::apply(input, kernel_size, stride, padding, ceil_mode,
                                  count_include_pad, divisor_override)[0];
}

at::Tensor avg_pool2d_backward_autograd(const at::Tensor& grad_output,
                                        c10::SymIntArrayRef input_size,
                                        at::IntArrayRef kernel_size, at::IntArrayRef stride,
                                        at::IntArrayRef padding, bool ceil_mode,
                                        bool count_include_pad,
                                        std::optional<int64_t> divisor_override) {
  if (!records_graph(grad_output)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return ops::avg_pool2d_backward(grad_output, input_size, kernel_size, stride, padding,
                                    ceil_mode, count_include_pad, divisor_override);
  }
  return AvgPool2dBackwardFunction::apply(grad_output, input_size, kernel_size, stride, padding,
                                          ceil_mode, count_include_pad, divisor_override)[0];
}

}  // namespace
}  // namespace pycnn::autograd

TORCH_LIBRARY_IMPL(pycnn, Autograd, m) {
  using namespace pycnn::autograd;
  m.impl("avg_pool2d", &avg_pool2d_autograd);
  m.impl("avg_pool2d_backward", &avg_pool2d_backward_autograd);
}
