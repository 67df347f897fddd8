// Layout changes around the fast convolution kernels, as elementwise
// functors (cuda_common.cuh), host-callable for the emulator:
//   PackActivation   any (N, C, H, W) strides -> NHWC with each group's
//                    channels padded with zeros to a whole granule, for the
//                    tensor-core kernels when the tensor is not already
//                    channels_last with aligned, granule-sized groups;
//   PackWeight       (K, C/g, R, S) -> [K][R][S][cgp] (forward);
//   PackWeightT      (K, C/g, R, S) -> [g][C/g][R][S][kgp] (grad_input: the
//                    reduced channel k innermost);
//   WgradFinalize    grad_weight = the sum of the workspace's splits, in
//                    split order (the fixed-order second half of the
//                    split-K grad_weight), cast to the tensor's type.
#pragma once

#include <cstdint>

#include "cuda_common.cuh"
#include "fast_divmod.cuh"

namespace pycnn {
namespace gpu {

// out[img][y][x][g * cgp + j] = j < cg ? in[img, g * cg + j, y, x] : 0.
// The fast kernels only run where every index fits in int (conv_fits_int32),
// so the element is decoded in int with FastDivmod: with 64-bit divisions
// this copy took a third of an RGB stem's float16 forward.
template <typename T>
struct PackActivation {
  const T* in;
  Strides4d in_s;
  T* out;
  int cg;
  FastDivmod div_cgp, div_groups, div_width, div_height;

  static PackActivation make(const T* in, const Strides4d& in_s, T* out, int64_t groups,
                             int64_t cg, int64_t cgp, int64_t height, int64_t width) {
    return {in, in_s, out, int(cg), FastDivmod::make(cgp), FastDivmod::make(groups),
            FastDivmod::make(width), FastDivmod::make(height)};
  }

  PYCNN_HOST_DEVICE void operator()(int64_t e) const {
    int rest, j, g, x, y, img;
    div_cgp.divmod(int(e), rest, j);
    div_groups.divmod(rest, rest, g);
    div_width.divmod(rest, rest, x);
    div_height.divmod(rest, img, y);
    const int64_t at = int64_t(img) * in_s.n + int64_t(g * cg + j) * in_s.c + int64_t(y) * in_s.h +
                       int64_t(x) * in_s.w;
    out[e] = j < cg ? in[at] : T(0.f);
  }
};
// out[k][r][s][j] = j < cpg ? w[k, j, r, s] : 0.
template <typename T>
struct PackWeight {
  const T* w;
  Strides4d w_s;
  T* out;
  int64_t cpg, cgp, kernel_h, kernel_w;

  PYCNN_HOST_DEVICE void operator()(int64_t e) const {
    const int64_t j = e % cgp;
    int64_t rest = e / cgp;
    const int64_t s = rest % kernel_w;
    rest /= kernel_w;
    const int64_t r = rest % kernel_h;
    const int64_t k = rest / kernel_h;
    out[e] = j < cpg ? w[offset_of(w_s, k, j, r, s)] : T(0.f);
  }
};

// out[g * cpg + c][r][s][j] = j < kpg ? w[g * kpg + j, c, r, s] : 0.
template <typename T>
struct PackWeightT {
  const T* w;
  Strides4d w_s;
  T* out;
  int64_t cpg, kpg, kgp, kernel_h, kernel_w;

  PYCNN_HOST_DEVICE void operator()(int64_t e) const {
    const int64_t j = e % kgp;
    int64_t rest = e / kgp;
    const int64_t s = rest % kernel_w;
    rest /= kernel_w;
    const int64_t r = rest % kernel_h;
    rest /= kernel_h;
    const int64_t c = rest % cpg;
    const int64_t g = rest / cpg;
    out[e] = j < kpg ? w[offset_of(w_s, g * kpg + j, c, r, s)] : T(0.f);
  }
};

// grad_w[k, c, r, s] = sum over splits (in order) of
// ws[split][g][k % kpg][(r * kernel_w + s) * k_channels + c], g = k / kpg.
template <typename T>
struct WgradFinalize {
  const float* ws;
  int64_t splits, groups, m_size, n_size, k_channels;
  int64_t kpg, cpg, kernel_h, kernel_w;
  T* out;
  Strides4d out_s;

  PYCNN_HOST_DEVICE void operator()(int64_t e) const {
    const int64_t s = e % kernel_w;
    int64_t rest = e / kernel_w;
    const int64_t r = rest % kernel_h;
    rest /= kernel_h;
    const int64_t c = rest % cpg;
    const int64_t k = rest / cpg;
    const int64_t g = k / kpg, m = k - g * kpg;
    const int64_t n = (r * kernel_w + s) * k_channels + c;
    const int64_t slice = groups * m_size * n_size;
    const float* src = ws + (g * m_size + m) * n_size + n;
    float sum = src[0];
    for (int64_t split = 1; split < splits; ++split) sum += src[split * slice];
    out[offset_of(out_s, k, c, r, s)] = static_cast<T>(sum);
  }
};

}  // namespace gpu
}  // namespace pycnn
