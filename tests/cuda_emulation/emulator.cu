// Runs pycnn's CUDA kernel code on the CPU, for machines without a GPU.
//
// The kernels' per-element work (the functors of conv2d_direct.cuh and the
// pooling headers) and the implicit-GEMM problems (conv2d_*_gemm.cuh) are
// PYCNN_HOST_DEVICE, so this file calls the very code the GPU runs.  What it
// replaces is only the launch: a sequential loop over elements, over the
// blocks of a block reduction in block_sum's order, and over the threads of
// an implicit-GEMM block in the phases the barriers separate (all threads
// load, then all multiply).  It also checks what the real kernels assume:
// every shared-memory tile slot written once per step, step ranges and
// step skipping uniform over a block.
//
// Shapes come from csrc/shape.h's formulas; arguments are assumed valid
// (the ops' checks are tested elsewhere).  Not part of the library: the
// test builds it with torch.utils.cpp_extension.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/python.h>

#include <cmath>
#include <vector>

#include "ops/cuda/adaptive_avg_pool2d.cuh"
#include "ops/cuda/adaptive_max_pool2d.cuh"
#include "ops/cuda/avg_pool2d.cuh"
#include "ops/cuda/conv2d_direct.cuh"
#include "ops/cuda/conv2d_forward_gemm.cuh"
#include "ops/cuda/conv2d_input_backward_gemm.cuh"
#include "ops/cuda/conv2d_weight_backward_gemm.cuh"
#include "ops/cuda/max_pool2d.cuh"

namespace pycnn {
namespace gpu {
namespace {

template <typename Op>
void emulate_elementwise(const Op& op, int64_t count) {
  for (int64_t i = 0; i < count; ++i) op(i);
}

template <typename Reduction>
void emulate_block_reduce(const Reduction& red) {
  using acc_t = typename Reduction::acc_t;
  std::vector<acc_t> scratch(kThreadsPerBlock);
  for (int64_t e = 0; e < red.outputs; ++e) {
    for (int t = 0; t < kThreadsPerBlock; ++t) {
      acc_t acc = acc_t(0);
      for (int64_t j = t; j < red.length; j += kThreadsPerBlock) acc += red.term(e, j);
      scratch[t] = acc;
    }
    for (int half = kThreadsPerBlock / 2; half > 0; half /= 2)
      for (int t = 0; t < half; ++t) scratch[t] += scratch[t + half];
    red.store(e, scratch[0]);
  }
}

template <typename Problem>
void emulate_implicit_gemm(const Problem& p) {
  using acc_t = typename Problem::acc_t;
  using State = typename Problem::TileState;
  SharedTiles<acc_t> tiles;
  std::vector<State> states(kGemmThreads);
  std::vector<ThreadAccumulator<acc_t>> accs(kGemmThreads);
  const auto row0 = [](int tid) { return (tid / kThreadsAlongN) * kThreadM; };
  const auto col0 = [](int tid) { return (tid % kThreadsAlongN) * kThreadN; };
  for (int64_t tile = 0; tile < p.num_tiles; ++tile) {
    for (int tid = 0; tid < kGemmThreads; ++tid) {
      states[tid] = p.begin_tile(tile, tid % kLoadRows);
      accs[tid].zero();
      TORCH_CHECK(states[tid].step_begin == states[0].step_begin &&
                      states[tid].step_end == states[0].step_end,
                  "emulator: step range differs between the threads of tile ", tile);
    }
    for (int64_t step = states[0].step_begin; step < states[0].step_end; ++step) {
      const bool contributes = p.step_contributes(states[0], step);
      for (int tid = 1; tid < kGemmThreads; ++tid) {
        TORCH_CHECK(p.step_contributes(states[tid], step) == contributes,
                    "emulator: step_contributes is not uniform over the block");
      }
      if (!contributes) continue;
      for (int k = 0; k < kTileK; ++k) {
        for (int m = 0; m < kTileM; ++m) tiles.a[k][m] = std::nan("");
        for (int n = 0; n < kTileN; ++n) tiles.b[k][n] = std::nan("");
      }
      for (int tid = 0; tid < kGemmThreads; ++tid)
        p.load_step(states[tid], step, tid % kLoadRows, tid / kLoadRows, tiles);
      // The tiles started as NaN: one left means a slot no thread wrote
      // (the emulated inputs are finite).
      for (int k = 0; k < kTileK; ++k) {
        for (int m = 0; m < kTileM; ++m) {
          TORCH_CHECK(!std::isnan(static_cast<double>(tiles.a[k][m])) &&
                          !std::isnan(static_cast<double>(tiles.b[k][m])),
                      "emulator: shared-memory tile slot (", k, ", ", m, ") left unwritten");
        }
      }
      for (int tid = 0; tid < kGemmThreads; ++tid) accs[tid].multiply(tiles, row0(tid), col0(tid));
    }
    for (int tid = 0; tid < kGemmThreads; ++tid)
      p.store_tile(states[tid], accs[tid], row0(tid), col0(tid));
  }
}

Pair pair_of(at::IntArrayRef v) { return v.size() == 1 ? Pair{v[0], v[0]} : Pair{v[0], v[1]}; }

Conv2dShape conv_shape(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                       at::IntArrayRef stride_arg, at::IntArrayRef padding_arg,
                       at::IntArrayRef dilation_arg, int64_t groups) {
  const Pair stride = pair_of(stride_arg), padding = pair_of(padding_arg),
             dilation = pair_of(dilation_arg);
  Conv2dShape s{};
  s.batch = input_size[0];
  s.in_channels = input_size[1];
  s.in_h = input_size[2];
  s.in_w = input_size[3];
  s.out_channels = weight_size[0];
  s.kernel_h = weight_size[2];
  s.kernel_w = weight_size[3];
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dilation_h = dilation[0];
  s.dilation_w = dilation[1];
  s.groups = groups;
  s.out_h = conv_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h);
  s.out_w = conv_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w);
  return s;
}

Pool2dShape pool_shape(at::IntArrayRef input_size, at::IntArrayRef kernel_arg,
                       at::IntArrayRef stride_arg, at::IntArrayRef padding_arg,
                       at::IntArrayRef dilation_arg, bool ceil_mode) {
  const Pair kernel = pair_of(kernel_arg);
  const Pair stride = stride_arg.empty() ? kernel : pair_of(stride_arg);
  const Pair padding = pair_of(padding_arg), dilation = pair_of(dilation_arg);
  Pool2dShape s{};
  s.batch = input_size[0];
  s.channels = input_size[1];
  s.in_h = input_size[2];
  s.in_w = input_size[3];
  s.kernel_h = kernel[0];
  s.kernel_w = kernel[1];
  s.stride_h = stride[0];
  s.stride_w = stride[1];
  s.pad_h = padding[0];
  s.pad_w = padding[1];
  s.dilation_h = dilation[0];
  s.dilation_w = dilation[1];
  s.ceil_mode = ceil_mode;
  s.out_h = pool_output_size(s.in_h, s.kernel_h, s.stride_h, s.pad_h, s.dilation_h, ceil_mode);
  s.out_w = pool_output_size(s.in_w, s.kernel_w, s.stride_w, s.pad_w, s.dilation_w, ceil_mode);
  return s;
}

AdaptivePool2dShape adaptive_shape(at::IntArrayRef input_size, at::IntArrayRef output_size) {
  const Pair out = pair_of(output_size);
  return {input_size[0], input_size[1], input_size[2], input_size[3], out[0], out[1]};
}

#define DISPATCH(dtype, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "emulator", __VA_ARGS__)

// path: "gemm" or "depthwise" (the latter needs one input channel per group).
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias_opt, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                  const std::string& path) {
  const Conv2dShape s = conv_shape(input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const at::Tensor bias = bias_opt.value_or(at::Tensor());
  if (output.numel() == 0) return output;
  DISPATCH(input.scalar_type(), [&] {
    if (path == "depthwise") {
      TORCH_CHECK(s.in_channels_per_group() == 1, "depthwise path needs one channel per group");
      emulate_elementwise(DepthwiseForward<scalar_t>::make(input, weight, bias, output, s),
                          output.numel());
    } else {
      emulate_implicit_gemm(make_forward_problem<scalar_t>(input, weight, bias, output, s));
    }
  });
  return output;
}

at::Tensor conv2d_input_backward(const at::Tensor& grad_output, const at::Tensor& weight,
                                 at::IntArrayRef input_size, at::IntArrayRef stride,
                                 at::IntArrayRef padding, at::IntArrayRef dilation,
                                 int64_t groups, const std::string& path) {
  const Conv2dShape s = conv_shape(input_size, weight.sizes(), stride, padding, dilation, groups);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  DISPATCH(grad_output.scalar_type(), [&] {
    if (path == "depthwise") {
      TORCH_CHECK(s.in_channels_per_group() == 1, "depthwise path needs one channel per group");
      emulate_elementwise(DepthwiseInputGrad<scalar_t>::make(grad_output, weight, grad_input, s),
                          grad_input.numel());
    } else {
      emulate_implicit_gemm(make_input_grad_problem<scalar_t>(grad_output, weight, grad_input, s));
    }
  });
  return grad_input;
}

// Also returns the number of splits the GEMM used (0 on the depthwise path).
std::tuple<at::Tensor, int64_t> conv2d_weight_backward(
    const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    const std::string& path) {
  const Conv2dShape s = conv_shape(input.sizes(), weight_size, stride, padding, dilation, groups);
  at::Tensor grad_weight = empty_output(weight_size, grad_output.options());
  if (s.batch == 0) return {grad_weight.zero_(), 0};
  int64_t splits = 0;
  DISPATCH(grad_output.scalar_type(), [&] {
    using acc_t = at::acc_type<scalar_t, true>;
    if (path == "depthwise") {
      TORCH_CHECK(s.in_channels_per_group() == 1, "depthwise path needs one channel per group");
      emulate_block_reduce(DepthwiseWeightGrad<scalar_t>::make(grad_output, input, grad_weight, s));
      return;
    }
    auto problem = make_weight_grad_problem<scalar_t>(grad_output, input, grad_weight, s);
    splits = problem.splits;
    if (problem.splits == 1) {
      emulate_implicit_gemm(problem);
      return;
    }
    const int64_t count = grad_weight.numel();
    at::Tensor workspace = at::full({problem.splits * count}, std::nan(""),
                                    grad_output.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    problem.partial = workspace.mutable_data_ptr<acc_t>();
    emulate_implicit_gemm(problem);
    TORCH_CHECK(!workspace.isnan().any().item<bool>(), "emulator: a split left its slice unwritten");
    emulate_elementwise(
        SumSplits<scalar_t>{problem.partial, problem.splits, count, problem.grad_weight}, count);
  });
  return {grad_weight, splits};
}

at::Tensor conv2d_bias_backward(const at::Tensor& grad_output) {
  at::Tensor grad_bias = empty_output({grad_output.size(1)}, grad_output.options());
  DISPATCH(grad_output.scalar_type(),
           [&] { emulate_block_reduce(BiasGrad<scalar_t>::make(grad_output, grad_bias)); });
  return grad_bias;
}

std::tuple<at::Tensor, at::Tensor> max_pool2d(const at::Tensor& input, at::IntArrayRef kernel,
                                              at::IntArrayRef stride, at::IntArrayRef padding,
                                              at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = pool_shape(input.sizes(), kernel, stride, padding, dilation, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  DISPATCH(input.scalar_type(), [&] {
    emulate_elementwise(MaxPoolForward<scalar_t>::make(input, output, indices, s), output.numel());
  });
  return {output, indices};
}

at::Tensor max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                               at::IntArrayRef input_size, at::IntArrayRef kernel,
                               at::IntArrayRef stride, at::IntArrayRef padding,
                               at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = pool_shape(input_size, kernel, stride, padding, dilation, ceil_mode);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  DISPATCH(grad_output.scalar_type(), [&] {
    emulate_elementwise(MaxPoolBackward<scalar_t>::make(grad_output, indices, grad_input, s),
                        grad_input.numel());
  });
  return grad_input;
}

at::Tensor avg_pool2d(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                      at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                      int64_t divisor_override) {
  const Pool2dShape s = pool_shape(input.sizes(), kernel, stride, padding, {1}, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  DISPATCH(input.scalar_type(), [&] {
    emulate_elementwise(AvgPoolForward<scalar_t>::make(input, output, s,
                                                       {count_include_pad, divisor_override}),
                        output.numel());
  });
  return output;
}

at::Tensor avg_pool2d_backward(const at::Tensor& grad_output, at::IntArrayRef input_size,
                               at::IntArrayRef kernel, at::IntArrayRef stride,
                               at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                               int64_t divisor_override) {
  const Pool2dShape s = pool_shape(input_size, kernel, stride, padding, {1}, ceil_mode);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  DISPATCH(grad_output.scalar_type(), [&] {
    emulate_elementwise(AvgPoolBackward<scalar_t>::make(grad_output, grad_input, s,
                                                        {count_include_pad, divisor_override}),
                        grad_input.numel());
  });
  return grad_input;
}

at::Tensor adaptive_avg_pool2d(const at::Tensor& input, at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = adaptive_shape(input.sizes(), output_size);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  DISPATCH(input.scalar_type(), [&] {
    emulate_elementwise(AdaptiveAvgForward<scalar_t>::make(input, output, s), output.numel());
  });
  return output;
}

at::Tensor adaptive_avg_pool2d_backward(const at::Tensor& grad_output, at::IntArrayRef input_size) {
  const AdaptivePool2dShape s = adaptive_shape(input_size, grad_output.sizes().slice(2));
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  DISPATCH(grad_output.scalar_type(), [&] {
    emulate_elementwise(AdaptiveAvgBackward<scalar_t>::make(grad_output, grad_input, s),
                        grad_input.numel());
  });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d(const at::Tensor& input,
                                                       at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = adaptive_shape(input.sizes(), output_size);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  DISPATCH(input.scalar_type(), [&] {
    emulate_elementwise(AdaptiveMaxForward<scalar_t>::make(input, output, indices, s),
                        output.numel());
  });
  return {output, indices};
}

at::Tensor adaptive_max_pool2d_backward(const at::Tensor& grad_output, const at::Tensor& indices,
                                        at::IntArrayRef input_size) {
  const AdaptivePool2dShape s = adaptive_shape(input_size, grad_output.sizes().slice(2));
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  DISPATCH(grad_output.scalar_type(), [&] {
    emulate_elementwise(AdaptiveMaxBackward<scalar_t>::make(grad_output, indices, grad_input, s),
                        grad_input.numel());
  });
  return grad_input;
}

}  // namespace
}  // namespace gpu
}  // namespace pycnn

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace pycnn::gpu;
  m.def("set_poison_outputs", &pycnn::set_poison_outputs);
  m.def("conv2d", &conv2d);
  m.def("conv2d_input_backward", &conv2d_input_backward);
  m.def("conv2d_weight_backward", &conv2d_weight_backward);
  m.def("conv2d_bias_backward", &conv2d_bias_backward);
  m.def("max_pool2d", &max_pool2d);
  m.def("max_pool2d_backward", &max_pool2d_backward);
  m.def("avg_pool2d", &avg_pool2d);
  m.def("avg_pool2d_backward", &avg_pool2d_backward);
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d);
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward);
  m.def("adaptive_max_pool2d", &adaptive_max_pool2d);
  m.def("adaptive_max_pool2d_backward", &adaptive_max_pool2d_backward);
}
