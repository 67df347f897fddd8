// pycnn's operators as C++ functions.  Each is a call through the dispatcher
// (defined beside its schema in csrc/ops/<op>.cpp), so it runs the whole
// stack a Python call runs: autograd, then the CPU or CUDA kernel.  The
// autograd formulas (csrc/ops/autograd/) call the backward ops this way, so
// that a backward taken with create_graph=True is itself differentiable.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymIntArrayRef.h>

#include <optional>
#include <tuple>

namespace pycnn::ops {

at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
// relu(conv2d(...)) in one kernel.
at::Tensor conv2d_relu(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups);
at::Tensor conv2d_input_backward(const at::Tensor& grad_output, const at::Tensor& weight,
                                 c10::SymIntArrayRef input_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups);
at::Tensor conv2d_weight_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                  c10::SymIntArrayRef weight_size, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation,
                                  int64_t groups);
at::Tensor conv2d_bias_backward(const at::Tensor& grad_output);

std::tuple<at::Tensor, at::Tensor> max_pool2d_with_indices(
    const at::Tensor& input, at::IntArrayRef kernel_size, at::IntArrayRef stride,
    at::IntArrayRef padding, at::IntArrayRef dilation, bool ceil_mode);
at::Tensor max_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                      bool ceil_mode);
at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                               c10::SymIntArrayRef input_size, at::IntArrayRef kernel_size,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode);

at::Tensor avg_pool2d(const at::Tensor& input, at::IntArrayRef kernel_size,
                      at::IntArrayRef stride, at::IntArrayRef padding, bool ceil_mode,
                      bool count_include_pad, std::optional<int64_t> divisor_override);
at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, c10::SymIntArrayRef input_size,
                               at::IntArrayRef kernel_size, at::IntArrayRef stride,
                               at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                               std::optional<int64_t> divisor_override);

at::Tensor adaptive_avg_pool2d(const at::Tensor& input, at::IntArrayRef output_size);
at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output,
                                        c10::SymIntArrayRef input_size);

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d(const at::Tensor& input,
                                                       at::IntArrayRef output_size);
at::Tensor adaptive_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                        c10::SymIntArrayRef input_size);

}  // namespace pycnn::ops

// The typed dispatcher handle of pycnn::<name>, looked up once; <name> must
// be the pycnn::ops function of the same signature.
#define PYCNN_OP_HANDLE(name)                                                   \
  ([]() -> const auto& {                                                        \
    static const auto handle = c10::Dispatcher::singleton()                     \
                                   .findSchemaOrThrow("pycnn::" #name, "")      \
                                   .typed<decltype(::pycnn::ops::name)>();      \
    return handle;                                                              \
  }())
