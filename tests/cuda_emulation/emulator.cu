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

#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "ops/cuda/adaptive_avg_pool2d.cuh"
#include "ops/cuda/adaptive_max_pool2d.cuh"
#include "ops/cuda/avg_pool2d.cuh"
#include "ops/cuda/conv2d_depthwise_fast.cuh"
#include "ops/cuda/conv2d_direct.cuh"
#include "ops/cuda/conv2d_fast.cuh"
#include "ops/cuda/conv2d_forward_gemm.cuh"
#include "ops/cuda/conv2d_input_backward_narrow.cuh"
#include "ops/cuda/conv2d_winograd.cuh"
#include "ops/cuda/conv2d_input_backward_gemm.cuh"
#include "ops/cuda/conv2d_weight_backward_gemm.cuh"
#include "ops/cuda/max_pool2d.cuh"
#include "ops/cuda/pool2d_fast_plan.cuh"
#include "host_model.h"

namespace pycnn {
namespace gpu {
namespace {

template <typename Op>
void emulate_elementwise(const Op& op, int64_t count) {
  for (int64_t i = 0; i < count; ++i) op(i);
}

// launch_items' loop.
template <class Op>
void run_items(const Op& op, int64_t count) {
  for (int64_t i = 0; i < count; ++i) op(int(i));
}

template <typename Reduction>
void emulate_block_reduce_once(const Reduction& red) {
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

// launch_block_reduce's passes, in the same split.
template <typename Reduction>
void emulate_block_reduce(const Reduction& red) {
  using acc_t = typename Reduction::acc_t;
  std::vector<acc_t> workspace;
  run_block_reduce(
      red,
      [&](int64_t n) {
        workspace.assign(size_t(n), acc_t(std::nan("")));
        return workspace.data();
      },
      [&](const auto& pass) { emulate_block_reduce_once(pass); });
}

// depthwise_weight_grad_kernel, block by block: each thread's sums, the
// warps' butterflies (lane l adds lane l ^ offset's value, as the shuffle
// does), then the warps in order.
template <typename Op>
void emulate_depthwise_weight_grad(const Op& op) {
  using acc_t = typename Op::acc_t;
  constexpr int kTaps = Op::kTaps;
  std::vector<std::array<acc_t, kTaps>> acc(kThreadsPerBlock), next(kThreadsPerBlock);
  for (int block = 0; block < op.blocks(); ++block) {
    int c, chunk, begin, end;
    op.block_range(block, c, chunk, begin, end);
    for (int j = 0; j < op.s.kpg; ++j) {
      const int k = c * op.s.kpg + j;
      for (int tid = 0; tid < kThreadsPerBlock; ++tid) {
        acc[tid].fill(acc_t(0));
        for (int p = begin + tid; p < end; p += kThreadsPerBlock) op.accumulate(p, c, k, acc[tid].data());
      }
      for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
        for (int tid = 0; tid < kThreadsPerBlock; ++tid) {
          const int partner = (tid / kWarpSize) * kWarpSize + ((tid % kWarpSize) ^ offset);
          for (int t = 0; t < kTaps; ++t) next[tid][t] = acc[tid][t] + acc[partner][t];
        }
        std::swap(acc, next);
      }
      for (int t = 0; t < kTaps; ++t) {
        acc_t sum = acc_t(0);
        for (int w = 0; w < kWarpsPerBlock; ++w) sum += acc[w * kWarpSize][t];
        op.store_partial(chunk, k, t, sum);
      }
    }
  }
}

// narrow_input_grad_kernel, block by block, in its barrier-separated
// phases: every thread stages, then every thread computes.  The tiles start
// as NaN, so a slot no thread staged shows in the result.
template <class Op>
void emulate_narrow(const Op& op, int batch) {
  using acc_t = typename Op::acc_t;
  std::vector<acc_t> go_tile(size_t(op.go_tile_elems())), w_tile(size_t(op.w_tile_elems()));
  std::vector<typename Op::Acc> acc(kThreadsPerBlock);
  for (int block = 0; block < op.blocks(batch); ++block) {
    const auto b = op.block(block);
    for (auto& a : acc)
      for (auto& pixel : a)
        for (auto& v : pixel) v = acc_t(0);
    for (int k0 = 0; k0 < op.out_channels; k0 += op.chunk) {
      std::fill(go_tile.begin(), go_tile.end(), acc_t(std::nan("")));
      std::fill(w_tile.begin(), w_tile.end(), acc_t(std::nan("")));
      for (int tid = 0; tid < kThreadsPerBlock; ++tid) op.stage(b, k0, tid, go_tile.data(), w_tile.data());
      for (int tid = 0; tid < kThreadsPerBlock; ++tid)
        op.compute(b, k0, tid, go_tile.data(), w_tile.data(), acc[tid]);
    }
    for (int tid = 0; tid < kThreadsPerBlock; ++tid) op.store(b, tid, acc[tid]);
  }
}

template <typename scalar_t, int kP>
void emulate_narrow_channels(const at::Tensor& grad_output, const at::Tensor& weight,
                             const at::Tensor& grad_input, const Conv2dShape& s) {
  const int batch = int(s.batch);
  switch (s.in_channels) {
    case 1:
      return emulate_narrow(NarrowInputGrad<scalar_t, 1, kP>::make(grad_output, weight, grad_input, s), batch);
    case 2:
      return emulate_narrow(NarrowInputGrad<scalar_t, 2, kP>::make(grad_output, weight, grad_input, s), batch);
    case 3:
      return emulate_narrow(NarrowInputGrad<scalar_t, 3, kP>::make(grad_output, weight, grad_input, s), batch);
    default:
      return emulate_narrow(NarrowInputGrad<scalar_t, 4, kP>::make(grad_output, weight, grad_input, s), batch);
  }
}

// As the library chooses: kNarrowPixelsPerThread pixels per thread where
// the shape allows, else one.  Records the choice for the tests.
template <typename scalar_t>
void emulate_narrow_input_grad(const at::Tensor& grad_output, const at::Tensor& weight,
                               const at::Tensor& grad_input, const Conv2dShape& s) {
  TORCH_CHECK(s.groups == 1 && s.in_channels <= kNarrowMaxChannels && s.dilation_h == 1 &&
                  s.dilation_w == 1,
              "the narrow kernel does not apply");
  constexpr int kP = kNarrowPixelsPerThread;
  if (NarrowInputGrad<scalar_t, kNarrowMaxChannels, kP>::fits(s)) {
    emu::counters().narrow_pixels = kP;
    return emulate_narrow_channels<scalar_t, kP>(grad_output, weight, grad_input, s);
  }
  const bool fits = NarrowInputGrad<scalar_t, kNarrowMaxChannels, 1>::fits(s);
  TORCH_CHECK(fits, "the narrow kernel does not apply");
  emu::counters().narrow_pixels = 1;
  emulate_narrow_channels<scalar_t, 1>(grad_output, weight, grad_input, s);
}

// f(KernelSize) for the fast depthwise kernels' sizes; the path needs one.
template <int K>
using KernelSize = std::integral_constant<int, K>;

template <class F>
void with_depthwise_kernel_size(const Conv2dShape& s, F&& f) {
  TORCH_CHECK(s.in_channels_per_group() == 1, "depthwise path needs one channel per group");
  TORCH_CHECK(s.kernel_h == s.kernel_w && (s.kernel_h == 3 || s.kernel_h == 5 || s.kernel_h == 7),
              "the fast depthwise kernels take 3x3, 5x5 and 7x7");
  if (s.kernel_h == 3) return f(KernelSize<3>{});
  if (s.kernel_h == 5) return f(KernelSize<5>{});
  return f(KernelSize<7>{});
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

// path: "gemm", "depthwise" or "depthwise_fast" (the depthwise paths need
// one input channel per group); relu: conv2d_relu's epilogue.
at::Tensor conv2d(const at::Tensor& input, const at::Tensor& weight,
                  const std::optional<at::Tensor>& bias_opt, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                  const std::string& path, bool relu) {
  const Conv2dShape s = conv_shape(input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const at::Tensor bias = bias_opt.value_or(at::Tensor());
  if (output.numel() == 0) return output;
  DISPATCH(input.scalar_type(), [&] {
    if (path == "depthwise") {
      TORCH_CHECK(s.in_channels_per_group() == 1, "depthwise path needs one channel per group");
      emulate_elementwise(DepthwiseForward<scalar_t>::make(input, weight, bias, output, s, relu),
                          output.numel());
    } else if (path == "depthwise_fast") {
      with_depthwise_kernel_size(s, [&](auto k) {
        const auto op =
            DepthwiseFastForward<scalar_t, decltype(k)::value>::make(input, weight, bias, output, s, relu);
        run_items(op, op.items);
      });
    } else {
      emulate_implicit_gemm(make_forward_problem<scalar_t>(input, weight, bias, output, s, relu));
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
    } else if (path == "narrow") {
      emulate_narrow_input_grad<scalar_t>(grad_output, weight, grad_input, s);
    } else if (path == "depthwise_fast") {
      with_depthwise_kernel_size(s, [&](auto k) {
        const auto op = DepthwiseFastInputGrad<scalar_t, decltype(k)::value>::make(grad_output, weight, grad_input, s);
        run_items(op, op.items);
      });
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
    if (path == "depthwise_fast") {
      with_depthwise_kernel_size(s, [&](auto k) {
        auto op = DepthwiseFastWeightGrad<scalar_t, decltype(k)::value>::make(grad_output, input, s);
        std::vector<acc_t> partial(size_t(op.partial_count()), acc_t(std::nan("")));
        op.partial = partial.data();
        emulate_depthwise_weight_grad(op);
        for (acc_t v : partial) TORCH_CHECK(!std::isnan(double(v)), "emulator: a partial sum left unwritten");
        emulate_block_reduce_once(ChunkTotals<acc_t, StoreWeightGrad<scalar_t>>{
            {grad_weight.mutable_data_ptr<scalar_t>()}, op.partial, grad_weight.numel(), op.chunks});
        splits = op.chunks;
      });
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

// ----------------------------------------------------------------------------- fast kernels
// family: "tc" (tensor cores: float16, bfloat16, float32 as TF32) or "ffma"
// (float32); tile: a ConvTileChoice (0 = the automatic choice).

template <class F>
void dispatch_fast(const std::string& family, at::ScalarType dtype, F&& f) {
  if (family == "ffma") {
    TORCH_CHECK(dtype == at::kFloat, "the ffma kernels take float32");
    f(SimtKernels{});
  } else if (family == "tc") {
    if (dtype == at::kHalf) {
      f(TcKernels<MmaKind::kF16, c10::Half>{});
    } else if (dtype == at::kBFloat16) {
      f(TcKernels<MmaKind::kBF16, c10::BFloat16>{});
    } else {
      TORCH_CHECK(dtype == at::kFloat, "the tensor-core kernels take float16, bfloat16, float32");
      f(TcKernels<MmaKind::kTF32, float>{});
    }
  } else {
    TORCH_CHECK(false, "unknown kernel family ", family);
  }
}

at::Tensor conv2d_fast(const at::Tensor& input, const at::Tensor& weight,
                       const std::optional<at::Tensor>& bias_opt, at::IntArrayRef stride,
                       at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       const std::string& family, int64_t tile, bool relu) {
  const Conv2dShape s = conv_shape(input.sizes(), weight.sizes(), stride, padding, dilation, groups);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  if (output.numel() == 0) return output;
  emu::HostLauncher launcher;
  dispatch_fast(family, input.scalar_type(), [&](auto kernels) {
    conv_forward_fast<decltype(kernels)>(input, weight, bias_opt.value_or(at::Tensor()), output, s,
                                         launcher, int(tile), relu);
  });
  return output;
}

at::Tensor conv2d_input_backward_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                                      at::IntArrayRef input_size, at::IntArrayRef stride,
                                      at::IntArrayRef padding, at::IntArrayRef dilation,
                                      int64_t groups, const std::string& family, int64_t tile) {
  const Conv2dShape s = conv_shape(input_size, weight.sizes(), stride, padding, dilation, groups);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  if (grad_input.numel() == 0) return grad_input;
  emu::HostLauncher launcher;
  dispatch_fast(family, grad_output.scalar_type(), [&](auto kernels) {
    conv_input_backward_fast<decltype(kernels)>(grad_output, weight, grad_input, s, launcher,
                                                int(tile));
  });
  return grad_input;
}

std::tuple<at::Tensor, int64_t> conv2d_weight_backward_fast(
    const at::Tensor& grad_output, const at::Tensor& input, at::IntArrayRef weight_size,
    at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
    const std::string& family, int64_t tile) {
  const Conv2dShape s = conv_shape(input.sizes(), weight_size, stride, padding, dilation, groups);
  at::Tensor grad_weight = empty_output(weight_size, grad_output.options());
  if (s.batch == 0) return {grad_weight.zero_(), 0};
  emu::HostLauncher launcher;
  int64_t splits = 0;
  dispatch_fast(family, grad_output.scalar_type(), [&](auto kernels) {
    splits = conv_weight_backward_fast<decltype(kernels)>(grad_output, input, grad_weight, s,
                                                          launcher, int(tile));
  });
  return {grad_weight, splits};
}

// Winograd F(2x2, 3x3) (float32): the forward convolution with stride 1 and
// the given padding, or with `transposed`, the weight read as grad_input
// reads it (transposed, rotated).  Its GEMMs run on the FFMA host model.
at::Tensor conv2d_winograd(const at::Tensor& input, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, at::IntArrayRef padding,
                           bool transposed, bool relu) {
  TORCH_CHECK(input.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat,
              "Winograd takes float32");
  const Pair pad = pair_of(padding);
  const int64_t out_channels = transposed ? weight.size(1) : weight.size(0);
  at::Tensor output = empty_in_layout_of(
      {input.size(0), out_channels, input.size(2) + 2 * pad[0] - 2, input.size(3) + 2 * pad[1] - 2},
      input);
  emu::HostLauncher launcher;
  winograd_conv(input, weight, bias.value_or(at::Tensor()), output, pad[0], pad[1], transposed,
                launcher, 0, relu);
  return output;
}

// Winograd's grad_weight (float32): the weight gradient of the stride-1
// 3x3 convolution with this padding, and the GEMM's K splits.
std::tuple<at::Tensor, int64_t> conv2d_winograd_weight_grad(const at::Tensor& grad_output,
                                                            const at::Tensor& input,
                                                            at::IntArrayRef padding) {
  TORCH_CHECK(input.scalar_type() == at::kFloat && grad_output.scalar_type() == at::kFloat,
              "Winograd takes float32");
  const Pair pad = pair_of(padding);
  at::Tensor grad_weight = empty_output({grad_output.size(1), input.size(1), 3, 3}, input.options());
  emu::HostLauncher launcher;
  const int64_t splits =
      winograd_weight_grad(grad_output, input, grad_weight, pad[0], pad[1], launcher, 0);
  return {grad_weight, splits};
}

bool winograd_applies_to(at::IntArrayRef input_size, at::IntArrayRef weight_size,
                         at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                         int64_t groups, bool input_grad) {
  return winograd_applies(conv_shape(input_size, weight_size, stride, padding, dilation, groups),
                          input_grad);
}

// ----------------------------------------------------------------------------- fast pooling
// The fast pooling functors under the plan the library would make (throws
// where it would fall back to the reference functors).

PoolPlan fast_pool_plan(const at::Tensor& written, std::initializer_list<const at::Tensor*> all) {
  const PoolPlan plan = plan_pool(written, all);
  TORCH_CHECK(plan.ok, "the fast pooling kernels do not apply here");
  emu::counters().pool_vector = plan.vector;
  return plan;
}

std::tuple<at::Tensor, at::Tensor> max_pool2d_fast(const at::Tensor& input, at::IntArrayRef kernel,
                                                   at::IntArrayRef stride, at::IntArrayRef padding,
                                                   at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = pool_shape(input.sizes(), kernel, stride, padding, dilation, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  const PoolPlan plan = fast_pool_plan(output, {&input, &output, &indices});
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(MaxPoolForwardFast<T, V>{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                       indices.mutable_data_ptr<int64_t>(), item_layout(output, plan),
                                       int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w), window32(s)},
              pool_items(output, plan));
  });
  return {output, indices};
}

at::Tensor max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                                    at::IntArrayRef input_size, at::IntArrayRef kernel,
                                    at::IntArrayRef stride, at::IntArrayRef padding,
                                    at::IntArrayRef dilation, bool ceil_mode) {
  const Pool2dShape s = pool_shape(input_size, kernel, stride, padding, dilation, ceil_mode);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolPlan plan = fast_pool_plan(grad_input, {&grad_output, &indices, &grad_input});
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(MaxPoolBackwardFast<T, V>{grad_output.const_data_ptr<T>(), indices.const_data_ptr<int64_t>(),
                                        grad_input.mutable_data_ptr<T>(), item_layout(grad_input, plan),
                                        int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w), window32(s)},
              pool_items(grad_input, plan));
  });
  return grad_input;
}

at::Tensor avg_pool2d_fast(const at::Tensor& input, at::IntArrayRef kernel, at::IntArrayRef stride,
                           at::IntArrayRef padding, bool ceil_mode, bool count_include_pad,
                           int64_t divisor_override) {
  const Pool2dShape s = pool_shape(input.sizes(), kernel, stride, padding, {1}, ceil_mode);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const PoolPlan plan = fast_pool_plan(output, {&input, &output});
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AvgPoolForwardFast<T, V>{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                       item_layout(output, plan), int(s.in_h), int(s.in_w),
                                       int(s.out_h), int(s.out_w), window32(s),
                                       {count_include_pad, int(divisor_override)}},
              pool_items(output, plan));
  });
  return output;
}

at::Tensor avg_pool2d_backward_fast(const at::Tensor& grad_output, at::IntArrayRef input_size,
                                    at::IntArrayRef kernel, at::IntArrayRef stride,
                                    at::IntArrayRef padding, bool ceil_mode,
                                    bool count_include_pad, int64_t divisor_override) {
  const Pool2dShape s = pool_shape(input_size, kernel, stride, padding, {1}, ceil_mode);
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolPlan plan = fast_pool_plan(grad_input, {&grad_output, &grad_input});
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AvgPoolBackwardFast<T, V>{grad_output.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>(),
                                        item_layout(grad_input, plan), int(s.in_h), int(s.in_w),
                                        int(s.out_h), int(s.out_w), window32(s),
                                        {count_include_pad, int(divisor_override)}},
              pool_items(grad_input, plan));
  });
  return grad_input;
}

at::Tensor adaptive_avg_pool2d_fast(const at::Tensor& input, at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = adaptive_shape(input.sizes(), output_size);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  const PoolPlan plan = fast_pool_plan(output, {&input, &output});
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AdaptiveAvgForwardFast<T, V>{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                           item_layout(output, plan), int(s.in_h), int(s.in_w),
                                           int(s.out_h), int(s.out_w)},
              pool_items(output, plan));
  });
  return output;
}

at::Tensor adaptive_avg_pool2d_backward_fast(const at::Tensor& grad_output, at::IntArrayRef input_size) {
  const AdaptivePool2dShape s = adaptive_shape(input_size, grad_output.sizes().slice(2));
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolPlan plan = fast_pool_plan(grad_input, {&grad_output, &grad_input});
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AdaptiveAvgBackwardFast<T, V>{grad_output.const_data_ptr<T>(), grad_input.mutable_data_ptr<T>(),
                                            item_layout(grad_input, plan), int(s.in_h), int(s.in_w),
                                            int(s.out_h), int(s.out_w)},
              pool_items(grad_input, plan));
  });
  return grad_input;
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool2d_fast(const at::Tensor& input,
                                                            at::IntArrayRef output_size) {
  const AdaptivePool2dShape s = adaptive_shape(input.sizes(), output_size);
  at::Tensor output = empty_in_layout_of(s.output_size(), input);
  at::Tensor indices = empty_in_layout_of(s.output_size(), input, at::kLong);
  const PoolPlan plan = fast_pool_plan(output, {&input, &output, &indices});
  dispatch_pool(output, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AdaptiveMaxForwardFast<T, V>{input.const_data_ptr<T>(), output.mutable_data_ptr<T>(),
                                           indices.mutable_data_ptr<int64_t>(), item_layout(output, plan),
                                           int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w)},
              pool_items(output, plan));
  });
  return {output, indices};
}

at::Tensor adaptive_max_pool2d_backward_fast(const at::Tensor& grad_output, const at::Tensor& indices,
                                             at::IntArrayRef input_size) {
  const AdaptivePool2dShape s = adaptive_shape(input_size, grad_output.sizes().slice(2));
  at::Tensor grad_input = empty_in_layout_of(input_size, grad_output);
  const PoolPlan plan = fast_pool_plan(grad_input, {&grad_output, &indices, &grad_input});
  dispatch_pool(grad_input, plan, [&](auto type, auto width) {
    using T = decltype(type);
    constexpr int V = decltype(width)::value;
    run_items(AdaptiveMaxBackwardFast<T, V>{grad_output.const_data_ptr<T>(), indices.const_data_ptr<int64_t>(),
                                            grad_input.mutable_data_ptr<T>(), item_layout(grad_input, plan),
                                            int(s.in_h), int(s.in_w), int(s.out_h), int(s.out_w)},
              pool_items(grad_input, plan));
  });
  return grad_input;
}

std::map<std::string, int64_t> emulator_counters(bool reset) {
  const emu::Counters c = emu::counters();
  if (reset) emu::counters() = emu::Counters{};
  return {{"blocks", c.blocks},           {"copies", c.copies},
          {"zero_fills", c.zero_fills},   {"mma", c.mma},
          {"shared_loads", c.shared_loads}, {"conflicted_loads", c.conflicted_loads},
          {"pool_vector", c.pool_vector}, {"narrow_pixels", c.narrow_pixels}};
}

// FastDivmod against exact division: every divisor d < d_limit with
// numerators around multiples of d, plus random ones up to 2^31 - 1.
int64_t check_fast_divmod(int64_t d_limit, int64_t samples, int64_t seed) {
  uint64_t state = uint64_t(seed) * 6364136223846793005ull + 1442695040888963407ull;
  const auto next = [&]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return uint32_t(state >> 33);  // 31 bits
  };
  int64_t checked = 0;
  const auto check = [&](int64_t n, int64_t d, const FastDivmod& f) {
    int q, r;
    f.divmod(int(n), q, r);
    TORCH_CHECK(q == n / d && r == n % d, "FastDivmod: ", n, " / ", d, " gave ", q, " r ", r);
    ++checked;
  };
  for (int64_t d = 1; d < d_limit; ++d) {
    const FastDivmod f = FastDivmod::make(d);
    for (int64_t k : {int64_t(0), int64_t(1), int64_t(2), int64_t(7), int64_t(1000), kInt32Limit / d}) {
      for (int64_t delta : {-1, 0, 1}) {
        const int64_t n = k * d + delta;
        if (n >= 0 && n <= kInt32Limit) check(n, d, f);
      }
    }
  }
  for (int64_t i = 0; i < samples; ++i) {
    const int64_t d = 1 + next() % kInt32Limit;
    const FastDivmod f = FastDivmod::make(d);
    check(next(), d, f);
    check(kInt32Limit, d, f);
  }
  return checked;
}

// The kernels' fragment maps against the PTX ISA's: fill a tile with the
// codes of its logical elements, load every warp fragment the kernels load
// (through the host ldmatrix / shared-load model) and check that each
// register element is the one the mma figure says it must be.  Also checks
// that each swizzle is a permutation of the tile's granules.  Returns the
// number of fragment elements checked.
template <class Tile, MmaKind kKind, bool kKContig>
int64_t check_tile_fragments(int rows_or_cols, int bk) {
  constexpr int kElem = kKind == MmaKind::kTF32 ? 4 : 2;
  constexpr int kV = 16 / kElem;
  // Logical extent: K-contiguous: rows = M (rows_or_cols), K = bk.
  // M-contiguous: rows = K (bk), columns = M (rows_or_cols).
  const int mn = rows_or_cols;
  const int bytes = mn * bk * kElem;
  emu::SharedMemory smem(bytes);
  std::vector<int> owner(bytes / 16, -1);
  std::vector<emu::PendingCopy> fills;
  std::vector<uint8_t> codes(bytes);
  const int rows = kKContig ? mn : bk, granules = (kKContig ? bk : mn) / kV;
  for (int r = 0; r < rows; ++r) {
    for (int g = 0; g < granules; ++g) {
      const int offset = Tile::offset(r, g);
      TORCH_CHECK(offset % 16 == 0 && offset >= 0 && offset + 16 <= bytes, "tile offset out of range");
      TORCH_CHECK(owner[offset / 16] < 0, "swizzle maps granules (", r, ", ", g, ") and ",
                  owner[offset / 16], " to one place");
      owner[offset / 16] = r * granules + g;
    }
  }
  // Codes: element (m, k) holds m * bk + k (16-bit or 32-bit).
  for (int m = 0; m < mn; ++m) {
    for (int k = 0; k < bk; ++k) {
      const int offset = kKContig ? Tile::offset(m, k / kV) + (k % kV) * kElem
                                  : Tile::offset(k, m / kV) + (m % kV) * kElem;
      const uint32_t code = uint32_t(m * bk + k);
      std::memcpy(&codes[offset], &code, kElem);
    }
  }
  emu::PendingCopy all{0, bytes, codes.data()};
  smem.issue(all);
  smem.land(all);
  smem.barrier();
  int64_t checked = 0;
  const int mma_k = kKind == MmaKind::kTF32 ? 8 : 16;
  for (int kk = 0; kk < bk / mma_k; ++kk) {
    for (int m0 = 0; m0 < mn; m0 += 16) {
      uint32_t a[32][4];
      emu::LaneRecord rec;
      for (int lane = 0; lane < 32; ++lane) {
        emu::HostWarpOps ops{&smem, &rec};
        Tile::load_a(ops, smem.base(), a[lane], m0, kk, lane);
      }
      for (int lane = 0; lane < 32; ++lane) {
        const int elems = kKind == MmaKind::kTF32 ? 4 : 8;
        for (int i = 0; i < elems; ++i) {
          const emu::FragmentCoord rc = kKind == MmaKind::kTF32 ? emu::a_tf32(lane, i) : emu::a_f16(lane, i);
          const uint32_t got = kKind == MmaKind::kTF32 ? a[lane][i] : (a[lane][i / 2] >> (16 * (i & 1))) & 0xffff;
          const uint32_t want = uint32_t((m0 + rc.row) * bk + kk * mma_k + rc.col);
          TORCH_CHECK(got == want, "A fragment: lane ", lane, " element ", i, " holds code ", got,
                      ", the mma figure needs ", want);
          ++checked;
        }
      }
      // The same tile read as B: n = m, two n8 blocks at a time.
      if (m0 % 16 == 0) {
        uint32_t b0[32][2], b1[32][2];
        for (int lane = 0; lane < 32; ++lane) {
          emu::HostWarpOps ops{&smem, &rec};
          Tile::load_b_pair(ops, smem.base(), b0[lane], b1[lane], m0, kk, lane);
        }
        for (int lane = 0; lane < 32; ++lane) {
          const int elems = kKind == MmaKind::kTF32 ? 2 : 4;
          for (int half = 0; half < 2; ++half) {
            for (int i = 0; i < elems; ++i) {
              const emu::FragmentCoord rc = kKind == MmaKind::kTF32 ? emu::b_tf32(lane, i) : emu::b_f16(lane, i);
              const uint32_t* b = half ? b1[lane] : b0[lane];
              const uint32_t got = kKind == MmaKind::kTF32 ? b[i] : (b[i / 2] >> (16 * (i & 1))) & 0xffff;
              const uint32_t want = uint32_t((m0 + 8 * half + rc.col) * bk + kk * mma_k + rc.row);
              TORCH_CHECK(got == want, "B fragment: lane ", lane, " element ", i, " of n8 block ",
                          half, " holds code ", got, ", the mma figure needs ", want);
              ++checked;
            }
          }
        }
      }
    }
  }
  return checked;
}

int64_t check_fragments() {
  int64_t n = 0;
  n += check_tile_fragments<KContigTile<128>, MmaKind::kF16, true>(128, 32);
  n += check_tile_fragments<KContigTile<64>, MmaKind::kF16, true>(64, 32);
  n += check_tile_fragments<KContigTile<128>, MmaKind::kTF32, true>(128, 16);
  n += check_tile_fragments<MNContigTile16<128>, MmaKind::kF16, false>(128, 32);
  n += check_tile_fragments<MNContigTile16<64>, MmaKind::kF16, false>(64, 32);
  n += check_tile_fragments<MNContigTile32<128>, MmaKind::kTF32, false>(128, 16);
  n += check_tile_fragments<MNContigTile32<64>, MmaKind::kTF32, false>(64, 16);
  return n;
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
  using pybind11::arg;
  // relu (conv2d_relu's epilogue) is off unless asked for.
  m.def("conv2d", &conv2d, arg("input"), arg("weight"), arg("bias"), arg("stride"), arg("padding"),
        arg("dilation"), arg("groups"), arg("path"), arg("relu") = false);
  m.def("conv2d_input_backward", &conv2d_input_backward);
  m.def("conv2d_weight_backward", &conv2d_weight_backward);
  m.def("conv2d_bias_backward", &conv2d_bias_backward);
  m.def("conv2d_fast", &conv2d_fast, arg("input"), arg("weight"), arg("bias"), arg("stride"),
        arg("padding"), arg("dilation"), arg("groups"), arg("family"), arg("tile"),
        arg("relu") = false);
  m.def("conv2d_winograd", &conv2d_winograd, arg("input"), arg("weight"), arg("bias"),
        arg("padding"), arg("transposed"), arg("relu") = false);
  m.def("conv2d_winograd_weight_grad", &conv2d_winograd_weight_grad, arg("grad_output"),
        arg("input"), arg("padding"));
  m.def("winograd_applies", &winograd_applies_to);
  m.def("conv2d_input_backward_fast", &conv2d_input_backward_fast);
  m.def("conv2d_weight_backward_fast", &conv2d_weight_backward_fast);
  m.def("counters", &emulator_counters, pybind11::arg("reset") = false);
  m.def("check_fast_divmod", &check_fast_divmod);
  m.def("reduce_chunks", [](int64_t outputs, int64_t length) {
    return pycnn::gpu::reduce_split(outputs, length).chunks;
  });
  m.def("check_fragments", &check_fragments);
  m.def("max_pool2d_fast", &max_pool2d_fast);
  m.def("max_pool2d_backward_fast", &max_pool2d_backward_fast);
  m.def("avg_pool2d_fast", &avg_pool2d_fast);
  m.def("avg_pool2d_backward_fast", &avg_pool2d_backward_fast);
  m.def("adaptive_avg_pool2d_fast", &adaptive_avg_pool2d_fast);
  m.def("adaptive_avg_pool2d_backward_fast", &adaptive_avg_pool2d_backward_fast);
  m.def("adaptive_max_pool2d_fast", &adaptive_max_pool2d_fast);
  m.def("adaptive_max_pool2d_backward_fast", &adaptive_max_pool2d_backward_fast);
  m.def("max_pool2d", &max_pool2d);
  m.def("max_pool2d_backward", &max_pool2d_backward);
  m.def("avg_pool2d", &avg_pool2d);
  m.def("avg_pool2d_backward", &avg_pool2d_backward);
  m.def("adaptive_avg_pool2d", &adaptive_avg_pool2d);
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward);
  m.def("adaptive_max_pool2d", &adaptive_max_pool2d);
  m.def("adaptive_max_pool2d_backward", &adaptive_max_pool2d_backward);
}
