// The micro-kernel template, written once with GCC vector extensions and
// compiled by each microkernels_<isa>.cpp under its own `#pragma GCC target`.
//
// Everything here has internal linkage (an unnamed namespace), so the
// AVX-512 instantiations can never be merged with, or stand in for, the
// baseline ones: a CPU without AVX-512 only ever calls the set that
// kernel_set() hands it.  Include nothing after the target pragma.
#pragma once

#include <cstdint>

#include "microkernels.h"

namespace pycnn {
namespace cpu {
namespace {

template <typename T, int Bytes>
struct VecOf {
  typedef T type __attribute__((vector_size(Bytes)));
  static constexpr int lanes = Bytes / static_cast<int>(sizeof(T));
};

// The signed integer type of T's width: the lanes of a shuffle's index.
template <typename T>
using IndexOf = std::conditional_t<sizeof(T) == 4, int32_t, int64_t>;

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
inline void store(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof(V));
}

// x - 0 is exactly x for every x (unlike 0 + x, which turns -0 into +0), so
// the compiler folds it away and emits a single broadcast.
template <typename V, typename T>
inline V broadcast(T x) {
  return x - V{};
}

template <typename T, int Bytes, int MR, int NV>
void indirect_kernel(int64_t steps, const T* __restrict base, const int64_t* __restrict rowoff,
                     const int64_t* __restrict stepoff, const T* __restrict b, int64_t ldb,
                     T* __restrict c, int64_t ldc, const T* __restrict col_init, bool accumulate) {
  using V = typename VecOf<T, Bytes>::type;
  constexpr int L = VecOf<T, Bytes>::lanes;
  V acc[MR][NV];
  if (accumulate) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = load<V>(c + i * ldc + v * L);
  } else {
    V init[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) init[v] = col_init ? load<V>(col_init + v * L) : V{};
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = init[v];
  }
  const T* rows[MR];
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i) rows[i] = base + rowoff[i];
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t o = stepoff[t];
    V bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = load<V>(b + v * L);
#pragma GCC unroll 32
    for (int i = 0; i < MR; ++i) {
      const V av = broadcast<V>(rows[i][o]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] += av * bv[v];
    }
    b += ldb;
  }
#pragma GCC unroll 32
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) store(c + i * ldc + v * L, acc[i][v]);
}

template <typename T, int Bytes, int MR, int NV>
IndirectKernel<T> shape() {
  IndirectKernel<T> k;
  k.mr = MR;
  k.nr = NV * VecOf<T, Bytes>::lanes;
  k.run = &indirect_kernel<T, Bytes, MR, NV>;
  return k;
}

template <typename T, int Bytes, int MR, int NV>
void lane_kernel(int64_t steps, const T* __restrict a, const T* __restrict src,
                 const int64_t* __restrict vecoff, const int64_t* __restrict stepoff,
                 T* __restrict c, int64_t ldc, bool accumulate) {
  using V = typename VecOf<T, Bytes>::type;
  constexpr int L = VecOf<T, Bytes>::lanes;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = accumulate ? load<V>(c + i * ldc + v * L) : V{};
  const T* vecs[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) vecs[v] = src + vecoff[v];
  for (int64_t t = 0; t < steps; ++t) {
    const int64_t o = stepoff[t];
    V x[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) x[v] = load<V>(vecs[v] + o);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V w = broadcast<V>(a[i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] += w * x[v];
    }
    a += MR;
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) store(c + i * ldc + v * L, acc[i][v]);
}

template <typename T, int Bytes, int MR, int NV>
LaneKernel<T> lane_shape() {
  LaneKernel<T> k;
  k.mr = MR;
  k.nv = NV;
  k.run = &lane_kernel<T, Bytes, MR, NV>;
  return k;
}

#if defined(__GNUC__) && !defined(__clang__)
// The transpose in log2(L) rounds: round B swaps the off-diagonal B x B
// blocks of every 2B x 2B block, one two-source shuffle per row.
template <typename V, typename T, int L, int B, int... Lane>
inline void transpose_round(V* r, std::integer_sequence<int, Lane...>) {
  using Index = typename VecOf<IndexOf<T>, L * static_cast<int>(sizeof(T))>::type;
  constexpr Index kLow{((Lane & B) ? L + Lane - B : Lane)...};
  constexpr Index kHigh{((Lane & B) ? L + Lane : Lane + B)...};
#pragma GCC unroll 16
  for (int i = 0; i < L; ++i) {
    if (i & B) continue;
    const V a = r[i], b = r[i + B];
    r[i] = __builtin_shuffle(a, b, kLow);
    r[i + B] = __builtin_shuffle(a, b, kHigh);
  }
}

// kRelu: stores relu(x), x < 0 ? 0 : x as relu_value has it (NaN and -0
// pass unchanged).
template <typename T, int Bytes, bool kRelu>
void transpose_tile(const T* __restrict src, int64_t src_stride, T* __restrict dst,
                    int64_t dst_stride) {
  using V = typename VecOf<T, Bytes>::type;
  constexpr int L = VecOf<T, Bytes>::lanes;
  constexpr auto lanes = std::make_integer_sequence<int, L>{};
  V r[L];
#pragma GCC unroll 16
  for (int i = 0; i < L; ++i) r[i] = load<V>(src + i * src_stride);
  if constexpr (L >= 16) transpose_round<V, T, L, 8>(r, lanes);
  if constexpr (L >= 8) transpose_round<V, T, L, 4>(r, lanes);
  if constexpr (L >= 4) transpose_round<V, T, L, 2>(r, lanes);
  if constexpr (L >= 2) transpose_round<V, T, L, 1>(r, lanes);
  if constexpr (kRelu) {
#pragma GCC unroll 16
    for (int i = 0; i < L; ++i) r[i] = r[i] < V{} ? V{} : r[i];
  }
#pragma GCC unroll 16
  for (int i = 0; i < L; ++i) store(dst + i * dst_stride, r[i]);
}

template <typename T, int Bytes, bool kRelu = false>
constexpr TransposeFn<T> transpose_for() { return &transpose_tile<T, Bytes, kRelu>; }
#else
template <typename T, int Bytes, bool kRelu = false>
constexpr TransposeFn<T> transpose_for() { return nullptr; }
#endif

// lane[1..8] of a set: NV per MR so that the MR x NV accumulators, the NV
// source vectors and a broadcast fit the register file (`registers`).
template <typename T, int Bytes, int Registers>
void fill_lane_kernels(KernelSet<T>& set) {
  constexpr auto nv = [](int mr) {
    int n = (Registers - 1) / (mr + 1);
    return n < 1 ? 1 : (n > 8 ? 8 : n);
  };
  set.lane[1] = lane_shape<T, Bytes, 1, nv(1)>();
  set.lane[2] = lane_shape<T, Bytes, 2, nv(2)>();
  set.lane[3] = lane_shape<T, Bytes, 3, nv(3)>();
  set.lane[4] = lane_shape<T, Bytes, 4, nv(4)>();
  set.lane[5] = lane_shape<T, Bytes, 5, nv(5)>();
  set.lane[6] = lane_shape<T, Bytes, 6, nv(6)>();
  set.lane[7] = lane_shape<T, Bytes, 7, nv(7)>();
  set.lane[8] = lane_shape<T, Bytes, 8, nv(8)>();
}

}  // namespace
}  // namespace cpu
}  // namespace pycnn
