// The host side of the fast convolution kernels: for one call, decide
// whether the operands can be read in place or must be packed, fill the
// GEMM parameters, choose the tile shape and launch (through a Launcher:
// the GPU's, or tests/cuda_emulation's host model, so that this logic is
// also what the emulator tests).
//
// Kernel families (a "Kernels" type):
//   TcKernels<kind, T>  tensor cores for float16, bfloat16 and float32 as
//                       TF32: operands must be channels-contiguous with each
//                       group's channels a whole number of 16-byte granules
//                       (8 half / 4 float) on 16-byte boundaries; anything
//                       else (NCHW, odd channel counts such as an RGB stem)
//                       is first packed to NHWC with zero-padded channels.
//   SimtKernels         FFMA for exact float32: 4-byte copies, any strides,
//                       no packing.
// grad_input's tensor-core weights are always repacked ([g][c][r][s][k]:
// the reduced channel k contiguous); the forward's are used in place when
// the weight is channels_last and needs no padding.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "../conv2d.h"
#include "conv2d_pack.cuh"
#include "igemm_block.cuh"

namespace pycnn {
namespace gpu {

template <MmaKind kKind, typename T>
struct TcKernels {
  using scalar_t = T;
  static constexpr int kV = 16 / int(sizeof(T));
  static constexpr bool kTensorCores = true;
  using Large = TcMath<TcConfig<kKind, 128, 128, 2, 4, 4>>;
  using Wide = TcMath<TcConfig<kKind, 128, 64, 2, 2, 4>>;
  using Small = TcMath<TcConfig<kKind, 64, 64, 2, 2, 4>>;
  using WgradLarge = Large;
  using WgradSmall = TcMath<TcConfig<kKind, 64, 128, 2, 2, 4>>;
};

struct SimtKernels {
  using scalar_t = float;
  static constexpr int kV = 1;
  static constexpr bool kTensorCores = false;
  using Large = SimtMath<128, 4>;
  using Wide = SimtMath<64, 4>;
  using Small = Wide;  // no smaller FFMA tile
  using WgradLarge = Large;
  using WgradSmall = Wide;
};

// Tile shapes (pycnn._C.set_cuda_conv_tile forces one, for tests and benchmarks).
enum ConvTileChoice : int { kTileAuto = 0, kTileLarge = 1, kTileWide = 2, kTileSmall = 3 };

PYCNN_HOST_DEVICE inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Largest element offset + 1 a tensor view can touch.
inline int64_t extent_of(const at::Tensor& t) {
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) {
    if (t.size(d) == 0) return 0;
    last += (t.size(d) - 1) * t.stride(d);
  }
  return last + 1;
}

inline bool fits_int32(const at::Tensor& t) {
  return t.numel() <= kInt32Limit && extent_of(t) <= kInt32Limit;
}

// Channels contiguous, each group's channels whole granules, every granule
// on a 16-byte boundary: the tensor-core kernels can read it in place.
inline bool granule_ready(const at::Tensor& t, int64_t channels_per_group, int v) {
  if (v == 1) return true;
  const auto aligned = [&](int64_t stride) { return stride % v == 0; };
  return t.stride(1) == 1 && channels_per_group % v == 0 && aligned(t.stride(0)) &&
         aligned(t.stride(2)) && aligned(t.stride(3)) &&
         reinterpret_cast<uintptr_t>(t.const_data_ptr()) % 16 == 0;
}

// The shape's fast kernels index with int: everything they touch, packed
// copies and workspace included, must fit.
inline bool conv_fits_int32(const Conv2dShape& s, std::initializer_list<const at::Tensor*> tensors,
                            int v) {
  for (const at::Tensor* t : tensors)
    if (!fits_int32(*t)) return false;
  // Options enter int sums and products with coordinates.
  const int64_t option_limit = int64_t(1) << 24;
  for (int64_t o : {s.kernel_h, s.kernel_w, s.stride_h, s.stride_w, s.pad_h, s.pad_w, s.dilation_h,
                    s.dilation_w})
    if (o > option_limit) return false;
  const int64_t cgp = round_up(s.in_channels_per_group(), v) * s.groups;
  const int64_t kgp = round_up(s.out_channels_per_group(), v) * s.groups;
  const int64_t taps = s.kernel_h * s.kernel_w;
  const int64_t limit = kInt32Limit / 4;  // room for a few splits of the workspace
  return s.batch * s.in_h * s.in_w * cgp <= kInt32Limit &&
         s.batch * s.out_h * s.out_w * kgp <= kInt32Limit && kgp * taps * cgp <= limit;
}

// Element strides of an activation operand (the kernels' 32-bit offsets).
struct ActivationView {
  uint32_t img, row, pix, c, group;
};

// The activation operand: t itself, or an NHWC copy with cgp channels per group.
template <typename T, class L>
const T* activation_operand(const at::Tensor& t, int64_t groups, int64_t cg, int64_t cgp, int granule,
                            L& launcher, std::vector<at::Tensor>& scratch, ActivationView& v) {
  if (cgp == cg && granule_ready(t, cg, granule)) {
    v = {uint32_t(t.stride(0)), uint32_t(t.stride(2)), uint32_t(t.stride(3)), uint32_t(t.stride(1)),
         uint32_t(cg * t.stride(1))};
    return t.template const_data_ptr<T>();
  }
  const int64_t n = t.size(0), h = t.size(2), w = t.size(3);
  at::Tensor packed = launcher.empty({n * h * w * groups * cgp}, t.scalar_type());
  launcher.elementwise(PackActivation<T>::make(t.template const_data_ptr<T>(), strides_of(t),
                                               packed.template mutable_data_ptr<T>(), groups, cg,
                                               cgp, h, w),
                       packed.numel());
  scratch.push_back(packed);
  v = {uint32_t(h * w * groups * cgp), uint32_t(w * groups * cgp), uint32_t(groups * cgp), 1,
       uint32_t(cgp)};
  return packed.template const_data_ptr<T>();
}

// Channels per group as the kernels see them: padded to a granule unless the
// tensor can be read in place.
inline int64_t padded_channels(const at::Tensor& t, int64_t cg, int v) {
  return granule_ready(t, cg, v) ? cg : round_up(cg, v);
}

struct TileCandidate {
  int choice, bm, bn, per_sm;
  double weight;  // relative speed of a full tile
};

// The tile shape with the best estimated throughput: the useful fraction of
// the tiles' area, times the filled fraction of the last wave of blocks,
// times the shape's own efficiency.  Only the speed depends on it: every
// shape sums each output in the same order.
inline int choose_conv_tile(int64_t m, int64_t n, int64_t z, int sms, bool tensor_cores) {
  static const TileCandidate tc[] = {{kTileLarge, 128, 128, 2, 1.0},
                                     {kTileWide, 128, 64, 4, 0.92},
                                     {kTileSmall, 64, 64, 6, 0.8}};
  static const TileCandidate simt[] = {{kTileLarge, 128, 128, 2, 1.0}, {kTileWide, 128, 64, 3, 0.95}};
  const TileCandidate* begin = tensor_cores ? tc : simt;
  const int count = tensor_cores ? 3 : 2;
  int best = begin[0].choice;
  double best_score = -1;
  for (int i = 0; i < count; ++i) {
    const TileCandidate& c = begin[i];
    const int64_t mt = (m + c.bm - 1) / c.bm, nt = (n + c.bn - 1) / c.bn;
    const double fill = double(m) * n / (double(mt) * c.bm * nt * c.bn);
    const double waves = double(mt * nt * z) / (double(sms) * c.per_sm);
    const double last = waves / std::ceil(waves);
    const double score = fill * last * c.weight;
    if (score > best_score + 1e-9) best = c.choice, best_score = score;
  }
  return best;
}

template <class Math, class Gemm, class L>
void launch_block(L& launcher, const typename Gemm::Params& p, int64_t m, int64_t n, int64_t z) {
  using Block = IgemmBlock<Math, Gemm>;
  const int64_t gx = (m + Math::BM - 1) / Math::BM, gy = (n + Math::BN - 1) / Math::BN;
  TORCH_INTERNAL_ASSERT(gx <= kInt32Limit && gy <= 65535 && z <= 65535, "pycnn: grid too large");
  launcher.template igemm<Block>(p, dim3(unsigned(gx), unsigned(gy), unsigned(z)));
}

template <class Kernels, class Gemm, class L>
void launch_conv_tile(L& launcher, int tile, const typename Gemm::Params& p, int64_t m, int64_t n,
                      int64_t z) {
  switch (tile) {
    case kTileWide:
      return launch_block<typename Kernels::Wide, Gemm>(launcher, p, m, n, z);
    case kTileSmall:
      return launch_block<typename Kernels::Small, Gemm>(launcher, p, m, n, z);
    default:
      return launch_block<typename Kernels::Large, Gemm>(launcher, p, m, n, z);
  }
}

inline bool pair_stores_ok(const at::Tensor& out) {
  return out.stride(1) == 1 && out.stride(0) % 2 == 0 && out.stride(2) % 2 == 0 &&
         out.stride(3) % 2 == 0 &&
         reinterpret_cast<uintptr_t>(out.const_data_ptr()) % (2 * out.element_size()) == 0;
}

template <typename T>
void set_output(ConvGemmParams<T>& p, const at::Tensor& out, int64_t n_per_group) {
  p.out = out.template mutable_data_ptr<T>();
  p.o_img = uint32_t(out.stride(0)), p.o_row = uint32_t(out.stride(2));
  p.o_pix = uint32_t(out.stride(3)), p.o_c = uint32_t(out.stride(1));
  p.o_group = uint32_t(n_per_group * out.stride(1));
  p.pair_stores = pair_stores_ok(out);
}

// grad_input's stride phases that hold a pixel.
inline int64_t input_grad_phases(const Conv2dShape& s) {
  return std::min(s.stride_h, s.in_h) * std::min(s.stride_w, s.in_w);
}

// output = conv2d(input, weight) + bias, and with relu max(that, 0).
template <class Kernels, class L>
void conv_forward_fast(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& bias,
                       const at::Tensor& output, const Conv2dShape& s, L& launcher, int tile,
                       bool relu) {
  using T = typename Kernels::scalar_t;
  constexpr int V = Kernels::kV;
  const int64_t groups = s.groups, cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  std::vector<at::Tensor> scratch;
  ConvGemmParams<T> p{};
  const int64_t cgp = padded_channels(input, cpg, V);
  ActivationView a;
  p.a = activation_operand<T>(input, groups, cpg, cgp, V, launcher, scratch, a);
  p.a_img = a.img, p.a_row = a.row, p.a_pix = a.pix, p.a_c = a.c, p.a_group = a.group;
  p.a_h = int(s.in_h), p.a_w = int(s.in_w);

  if (cgp == cpg && granule_ready(weight, cpg, V)) {
    p.b = weight.template const_data_ptr<T>();
    p.b_n = uint32_t(weight.stride(0)), p.b_c = uint32_t(weight.stride(1));
    p.b_r = uint32_t(weight.stride(2)), p.b_s = uint32_t(weight.stride(3));
  } else {
    at::Tensor packed = launcher.empty({s.out_channels * s.kernel_h * s.kernel_w * cgp}, weight.scalar_type());
    launcher.elementwise(PackWeight<T>{weight.template const_data_ptr<T>(), strides_of(weight),
                                       packed.template mutable_data_ptr<T>(), cpg, cgp, s.kernel_h,
                                       s.kernel_w},
                         packed.numel());
    scratch.push_back(packed);
    p.b = packed.template const_data_ptr<T>();
    p.b_n = uint32_t(s.kernel_h * s.kernel_w * cgp), p.b_c = 1;
    p.b_r = uint32_t(s.kernel_w * cgp), p.b_s = uint32_t(cgp);
  }
  p.b_group = uint32_t(kpg) * p.b_n;

  set_output(p, output, kpg);
  p.bias = bias.defined() ? bias.template const_data_ptr<T>() : nullptr;
  p.bias_stride = bias.defined() ? uint32_t(bias.stride(0)) : 0;
  p.relu = relu;
  p.n_size = int(kpg);
  p.k_channels = int(cgp);
  p.num_phases = 1;
  p.phase[0] = forward_phase(int(s.batch), int(s.out_h), int(s.out_w), int(s.kernel_h),
                             int(s.kernel_w), int(s.stride_h), int(s.stride_w), int(s.pad_h),
                             int(s.pad_w), int(s.dilation_h), int(s.dilation_w));

  const int64_t m = s.batch * s.out_h * s.out_w;
  if (tile == kTileAuto) tile = choose_conv_tile(m, kpg, groups, launcher.sm_count(), Kernels::kTensorCores);
  launch_conv_tile<Kernels, ConvGemm<T>>(launcher, tile, p, m, kpg, groups);
}

// grad_input = conv2d's gradient with respect to its input.
template <class Kernels, class L>
void conv_input_backward_fast(const at::Tensor& grad_output, const at::Tensor& weight,
                              const at::Tensor& grad_input, const Conv2dShape& s, L& launcher,
                              int tile) {
  using T = typename Kernels::scalar_t;
  constexpr int V = Kernels::kV;
  const int64_t groups = s.groups, cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  std::vector<at::Tensor> scratch;
  ConvGemmParams<T> p{};
  const int64_t kgp = padded_channels(grad_output, kpg, V);
  ActivationView a;
  p.a = activation_operand<T>(grad_output, groups, kpg, kgp, V, launcher, scratch, a);
  p.a_img = a.img, p.a_row = a.row, p.a_pix = a.pix, p.a_c = a.c, p.a_group = a.group;
  p.a_h = int(s.out_h), p.a_w = int(s.out_w);

  if (V == 1) {  // element copies: the weight as it is, n = c, channel = k
    p.b = weight.template const_data_ptr<T>();
    p.b_n = uint32_t(weight.stride(1)), p.b_c = uint32_t(weight.stride(0));
    p.b_r = uint32_t(weight.stride(2)), p.b_s = uint32_t(weight.stride(3));
    p.b_group = uint32_t(kpg * weight.stride(0));
  } else {
    at::Tensor packed = launcher.empty({groups * cpg * s.kernel_h * s.kernel_w * kgp}, weight.scalar_type());
    launcher.elementwise(PackWeightT<T>{weight.template const_data_ptr<T>(), strides_of(weight),
                                        packed.template mutable_data_ptr<T>(), cpg, kpg, kgp,
                                        s.kernel_h, s.kernel_w},
                         packed.numel());
    scratch.push_back(packed);
    p.b = packed.template const_data_ptr<T>();
    p.b_n = uint32_t(s.kernel_h * s.kernel_w * kgp), p.b_c = 1;
    p.b_r = uint32_t(s.kernel_w * kgp), p.b_s = uint32_t(kgp);
    p.b_group = uint32_t(cpg) * p.b_n;
  }

  set_output(p, grad_input, cpg);
  p.bias = nullptr;
  p.bias_stride = 0;
  p.n_size = int(cpg);
  p.k_channels = int(kgp);
  const int phases_h = int(std::min(s.stride_h, s.in_h)), phases_w = int(std::min(s.stride_w, s.in_w));
  TORCH_INTERNAL_ASSERT(phases_h * phases_w <= kMaxConvPhases);
  p.num_phases = phases_h * phases_w;
  for (int ph = 0; ph < phases_h; ++ph)
    for (int pw = 0; pw < phases_w; ++pw)
      p.phase[ph * phases_w + pw] = input_grad_phase(
          ph, pw, int(s.batch), int(s.in_h), int(s.in_w), int(s.kernel_h), int(s.kernel_w),
          int(s.stride_h), int(s.stride_w), int(s.pad_h), int(s.pad_w), int(s.dilation_h),
          int(s.dilation_w));

  // M of the largest phase (phase 0): the grid covers every phase.
  const int64_t m = p.phase[0].pixels;
  const int64_t z = groups * p.num_phases;
  if (tile == kTileAuto) tile = choose_conv_tile(m, cpg, z, launcher.sm_count(), Kernels::kTensorCores);
  launch_conv_tile<Kernels, ConvGemm<T>>(launcher, tile, p, m, cpg, z);
}

// How many ranges grad_weight's pixels are split into.  Blocks run in waves
// of kReferenceSms x blocks_per_sm; a wave with a few blocks left over costs
// as much as a full one (rounding the split count up to "two waves" gave
// 265 and 288 blocks for 264 slots, so most layers ran a second wave for a
// handful of blocks).  The count minimises waves x (K steps per split + a
// fixed cost per block), preferring fewer splits unless more are 2 % faster,
// with at least kWgradMinStepsPerSplit steps each.  A function of the shape
// only (never of the device), so that the result is bitwise the same on
// every GPU.
constexpr int64_t kReferenceSms = 132;  // an H100 SXM's or an H200's
constexpr int64_t kWgradMinStepsPerSplit = 8;
constexpr int64_t kWgradMaxSplits = 128;
constexpr double kWgradBlockOverheadSteps = 16;  // prologue, epilogue, workspace write

inline int64_t choose_wgrad_splits(int64_t tiles, int64_t steps, int blocks_per_sm) {
  const int64_t slots = kReferenceSms * blocks_per_sm;
  int64_t best = 1;
  double best_cost = std::numeric_limits<double>::infinity();
  for (int64_t s = 1; s <= kWgradMaxSplits; ++s) {
    const int64_t per_split = (steps + s - 1) / s;
    if (s > 1 && per_split < kWgradMinStepsPerSplit) break;
    const int64_t waves = (tiles * s + slots - 1) / slots;
    const double cost = double(waves) * (double(per_split) + kWgradBlockOverheadSteps);
    if (cost < 0.98 * best_cost) best = s, best_cost = cost;
  }
  return best;
}

// grad_weight = conv2d's gradient with respect to its weight.  Returns the
// number of splits (for tests).
template <class Kernels, class L>
int64_t conv_weight_backward_fast(const at::Tensor& grad_output, const at::Tensor& input,
                                  const at::Tensor& grad_weight, const Conv2dShape& s,
                                  L& launcher, int tile) {
  using T = typename Kernels::scalar_t;
  constexpr int V = Kernels::kV;
  const int64_t groups = s.groups, cpg = s.in_channels_per_group(), kpg = s.out_channels_per_group();
  std::vector<at::Tensor> scratch;
  WgradParams<T> p{};

  const int64_t kgp = padded_channels(grad_output, kpg, V);
  ActivationView a;
  p.go = activation_operand<T>(grad_output, groups, kpg, kgp, V, launcher, scratch, a);
  p.go_img = a.img, p.go_row = a.row, p.go_pix = a.pix, p.go_c = a.c, p.go_group = a.group;
  const int64_t cgp = padded_channels(input, cpg, V);
  ActivationView b;
  p.in = activation_operand<T>(input, groups, cpg, cgp, V, launcher, scratch, b);
  p.in_img = b.img, p.in_row = b.row, p.in_pix = b.pix, p.in_c = b.c, p.in_group = b.group;

  const int64_t taps = s.kernel_h * s.kernel_w;
  p.groups = int(groups);
  p.m_size = int(kgp);
  p.n_size = int(taps * cgp);
  p.k_channels = int(cgp);
  p.kernel_w = int(s.kernel_w);
  p.in_h = int(s.in_h), p.in_w = int(s.in_w), p.out_h = int(s.out_h), p.out_w = int(s.out_w);
  p.stride_h = int(s.stride_h), p.stride_w = int(s.stride_w);
  p.pad_h = int(s.pad_h), p.pad_w = int(s.pad_w);
  p.dil_h = int(s.dilation_h), p.dil_w = int(s.dilation_w);
  const int64_t pixels = s.batch * s.out_h * s.out_w;
  p.pixels = int(pixels);
  p.div_ow = FastDivmod::make(s.out_w);
  p.div_ohw = FastDivmod::make(s.out_h * s.out_w);

  // The tile shape, like the splits, depends on the shape only.  Tensor
  // cores: the 64-row tile for at most 64 output channels.  FFMA: 128 x 128
  // always; measured on the H100 at 64 output channels it beats 64 x 128 by
  // 1.3-1.6x (VGG-16 conv1_2 wgrad 15.2 ms vs 23.8, ResNet layer1 1.84 vs 3.00).
  if (tile == kTileAuto) tile = Kernels::kTensorCores && kgp <= 64 ? kTileSmall : kTileLarge;
  const bool small = tile == kTileSmall || tile == kTileWide;
  const int bm = small ? Kernels::WgradSmall::BM : Kernels::WgradLarge::BM;
  const int bn = small ? Kernels::WgradSmall::BN : Kernels::WgradLarge::BN;
  const int bk = Kernels::WgradLarge::BK;
  const int64_t tiles = ((kgp + bm - 1) / bm) * ((p.n_size + bn - 1) / bn) * groups;
  const int64_t steps = (pixels + bk - 1) / bk;
  const int blocks_per_sm = small ? Kernels::WgradSmall::kMinBlocks : Kernels::WgradLarge::kMinBlocks;
  int64_t splits = choose_wgrad_splits(tiles, steps, blocks_per_sm);
  const int64_t per_split = (steps + splits - 1) / splits;
  splits = (steps + per_split - 1) / per_split;  // no empty split
  p.steps = int(steps), p.steps_per_split = int(per_split), p.splits = int(splits);

  const int64_t slice = groups * kgp * p.n_size;
  at::Tensor ws = launcher.empty({splits * slice}, at::kFloat);
  p.ws = ws.template mutable_data_ptr<float>();
  if (small) {
    launch_block<typename Kernels::WgradSmall, WgradGemm<T>>(launcher, p, kgp, p.n_size, groups * splits);
  } else {
    launch_block<typename Kernels::WgradLarge, WgradGemm<T>>(launcher, p, kgp, p.n_size, groups * splits);
  }
  launcher.elementwise(
      WgradFinalize<T>{p.ws, splits, groups, kgp, p.n_size, cgp, kpg, cpg, s.kernel_h, s.kernel_w,
                       grad_weight.template mutable_data_ptr<T>(), strides_of(grad_weight)},
      grad_weight.numel());
  return splits;
}

}  // namespace gpu
}  // namespace pycnn
