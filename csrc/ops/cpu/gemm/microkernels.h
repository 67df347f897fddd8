// Register-blocked micro-kernels: the only place the CPU convolutions do
// their multiply-adds.  Each instruction set (AVX-512, AVX2, baseline SSE2)
// compiles the same template (microkernels_impl.h) in its own translation
// unit; kernel_set() picks one at run time.
//
// The kernel is an outer-product GEMM tile whose broadcast operand is read
// through offset tables instead of a packed panel ("indirect" GEMM):
//
//   C[i][j] = init(i, j) + sum_t  base[rowoff[i] + stepoff[t]] * b[t * ldb + j]
//
// for i < MR, j < NR (NR = NV vector registers).  A convolution maps onto
// it without an im2col buffer: in the forward pass i runs over output pixels
// (rowoff = where each pixel's window starts), t over (channel, tap) pairs
// (stepoff = where that tap reads relative to the window) and j over output
// channels (b = the packed weights); the weight gradient swaps the roles of
// rowoff and stepoff.
//
// This header is included by the ISA-specific units before their target
// pragma: plain declarations, and every standard header the template needs.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace pycnn {
namespace cpu {

// init(i, j) is C itself when `accumulate`, else col_init[j] when given (a
// bias), else 0.  C rows are ldc apart and all MR x NR entries are written;
// callers route partial tiles through a scratch tile.
template <typename T>
using IndirectKernelFn = void (*)(int64_t steps, const T* base, const int64_t* rowoff,
                                  const int64_t* stepoff, const T* b, int64_t ldb, T* c,
                                  int64_t ldc, const T* col_init, bool accumulate);

template <typename T>
struct IndirectKernel {
  int mr = 0;
  int nr = 0;
  IndirectKernelFn<T> run = nullptr;
};

// The pixel-lane kernel, for convolutions with few destination channels
// (LeNet's C1 forward, grad_input of 3-channel stems): there the kernel
// above would leave most of its NR columns empty, so this one puts output
// pixels on the vector lanes and the destination channels in the rows:
//
//   C[i][v*L + l] = init + sum_t  a[t * MR + i] * src[vecoff[v] + stepoff[t] + l]
//
// for i < MR, v < NV, l < L (L = vector width): vector v covers L
// neighbouring pixels of one row (vecoff: where the first one's window
// starts), step t is a (channel, tap) pair (stepoff: where it reads, relative
// to that), a holds the packed weights.  init is C itself when `accumulate`,
// else 0.  C rows are ldc apart.
template <typename T>
using LaneKernelFn = void (*)(int64_t steps, const T* a, const T* src, const int64_t* vecoff,
                              const int64_t* stepoff, T* c, int64_t ldc, bool accumulate);

template <typename T>
struct LaneKernel {
  int mr = 0;
  int nv = 0;
  LaneKernelFn<T> run = nullptr;
};

constexpr int kMaxLaneRows = 8;

// Transposes one L x L tile (L = the set's vector width):
// dst[k * dst_stride + j] = src[j * src_stride + k] for j, k < L.  Packing
// the weights into B panels is such a transpose; element by element it
// cost 5 cycles per weight, 2 ms for a 512x512 3x3 layer (a fifth of
// ResNet's 7x7 layer4 forward).
template <typename T>
using TransposeFn = void (*)(const T* src, int64_t src_stride, T* dst, int64_t dst_stride);

constexpr int kMaxKernelShapes = 4;

template <typename T>
struct KernelSet {
  const char* isa = "";
  int vector_width = 1;  // elements of T per SIMD register
  int count = 0;
  IndirectKernel<T> shapes[kMaxKernelShapes];  // the tile shapes on offer, widest NR first
  LaneKernel<T> lane[kMaxLaneRows + 1];         // lane[m]: the pixel-lane kernel with MR = m
  TransposeFn<T> transpose = nullptr;           // nullptr where the compiler has no shuffles
  TransposeFn<T> transpose_relu = nullptr;      // the same, storing relu(x) (conv2d_relu's outputs)
};

// One set per instruction set and dtype, defined in microkernels_<isa>.cpp.
const KernelSet<float>& avx512_kernels_f32();
const KernelSet<double>& avx512_kernels_f64();
const KernelSet<float>& avx2_kernels_f32();
const KernelSet<double>& avx2_kernels_f64();
const KernelSet<float>& generic_kernels_f32();
const KernelSet<double>& generic_kernels_f64();

}  // namespace cpu
}  // namespace pycnn
