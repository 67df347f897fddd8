// Process-wide settings of pycnn's kernels, set from Python through
// pycnn._C (pycnn.set_tf32 and the test hooks in pycnn._extension).
#pragma once

namespace pycnn {

// TF32 for float32 convolutions on CUDA (the tensor cores read float32
// operands with a 10-bit mantissa, accumulate in float32).
//   kTf32FollowTorch (the default): whatever torch.backends.cudnn.allow_tf32
//     says now (torch's own default: on), so that pycnn and cuDNN compare
//     like for like;
//   kTf32Off / kTf32On: pycnn's own choice, whatever torch's.
enum Tf32Mode : int { kTf32FollowTorch = -1, kTf32Off = 0, kTf32On = 1 };
void set_tf32_mode(int mode);
int tf32_mode();
// The effective choice for the next float32 convolution.
bool tf32_enabled();

// Which CUDA kernels run, for tests and benchmarks:
//   kCudaKernelsAuto: the fast kernels where they apply (conv2d_fast.cuh,
//     pool2d_fast.cuh);
//   kCudaKernelsReference: always the first, simple ones (the reference
//     implicit GEMM, one thread per element with 64-bit indexing);
//   kCudaKernelsGemm: the fast kernels, but the implicit GEMM where Winograd
//     would run (conv2d_winograd.cuh), to measure one against the other.
enum CudaKernels : int { kCudaKernelsAuto = 0, kCudaKernelsReference = 1, kCudaKernelsGemm = 2 };
void set_cuda_kernels(int kernels);
int cuda_kernels();

// Which CPU convolution kernels run, for tests and benchmarks:
//   kCpuConvKernelsAuto: Winograd F(2x2, 3x3) and the NCHW 1x1 path where
//     they apply (cpu/conv2d_winograd.h, cpu/conv2d_pointwise.h), else the
//     GEMM, narrow and direct kernels;
//   kCpuConvKernelsGemm: the same, but the GEMM where Winograd or the 1x1
//     path would run, to measure one against the other.
enum CpuConvKernels : int { kCpuConvKernelsAuto = 0, kCpuConvKernelsGemm = 1 };
void set_cpu_conv_kernels(int kernels);
int cpu_conv_kernels();

// Tile shape of the fast kernels: 0 automatic, else a ConvTileChoice
// (1: 128 x 128, 2: 128 x 64, 3: 64 x 64).
void set_cuda_conv_tile(int tile);
int cuda_conv_tile();

// Counts the max-pool gradients of dense CPU tensors that fell back to the
// reference loops because some index named no tap of its own window.  The
// indices a forward gives never do, so tests check that the vector paths
// accepted them (a fallback gives the same numbers, only slower).
void count_max_pool_reference_fallback();
long long max_pool_reference_fallbacks();

// Counts the CPU convolution passes (forward or grad_input) that ran the
// NCHW 1x1 product (cpu/conv2d_pointwise.h), so tests can see that their
// shapes reach it.
void count_pointwise_conv_pass();
long long pointwise_conv_passes();

}  // namespace pycnn
