// What the ops' autograd formulas (csrc/ops/autograd/*_autograd.cpp) share.
//
// The formulas are C++ (torch::autograd::Function registered at the Autograd
// key) rather than Python (torch.library.register_autograd): a Python formula
// costs 20-40 us per op and pass in the interpreter, more than the whole
// kernel of a LeNet-sized layer.  Each formula calls the backward ops through
// the dispatcher (ops.h), so a backward run with create_graph=True records
// them, and their own formulas give the double backward.
#pragma once

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <optional>
#include <vector>

#include "../ops.h"

namespace pycnn::autograd {

using torch::autograd::AutogradContext;
using torch::autograd::Variable;
using torch::autograd::variable_list;

// The gradient of max_pool2d_backward / adaptive_max_pool2d_backward with
// respect to grad_output: each output reads the element its index chose
// (the adjoint of the backward's scatter).
inline at::Tensor gather_at_indices(const at::Tensor& grad_grad_input, const at::Tensor& indices) {
  return grad_grad_input.flatten(2).gather(2, indices.flatten(2)).view_symint(indices.sym_sizes());
}

inline bool requires_grad(const at::Tensor& t) { return t.defined() && t.requires_grad(); }
inline bool requires_grad(const std::optional<at::Tensor>& t) {
  return t.has_value() && requires_grad(*t);
}

// Whether a call must record a graph node: grad mode on and some input
// requiring grad.  Otherwise the formulas go straight to the kernel:
// Function::apply would still build a context and store every option in its
// string-keyed map, about a microsecond, which a small pool notices.
template <typename... Tensors>
bool records_graph(const Tensors&... inputs) {
  return at::GradMode::is_enabled() && (... || requires_grad(inputs));
}

// Saved int[] options come back as std::vector<int64_t>.
inline std::vector<int64_t> saved_ints(const AutogradContext* ctx, const char* name) {
  return ctx->saved_data.at(name).toIntVector();
}

inline std::vector<c10::SymInt> saved_sizes(const AutogradContext* ctx, const char* name) {
  return ctx->saved_data.at(name).toSymIntVector();
}

}  // namespace pycnn::autograd
