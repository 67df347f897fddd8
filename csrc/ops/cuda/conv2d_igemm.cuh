// The implicit-GEMM machinery shared by conv2d's three GEMM kernels
// (forward, grad_input, grad_weight).
//
// Each of them is a matrix product C[M x N] = sum over K of A[M x K] B[K x N]
// whose operands are never materialised: a "problem" struct computes the
// address of A[m, k] and B[k, n] in the convolution's tensors on the fly
// (no im2col buffer), and writes C back into its output tensor.  The
// generic kernel below owns the tiling:
//
//   * a block computes one kTileM x kTileN tile of C, stepping along K
//     kTileK at a time;
//   * at every step each thread gathers kLoadPasses elements of the A and of
//     the B tile into shared memory (the problem's load_step), the block
//     synchronises, and each thread accumulates its kThreadM x kThreadN
//     sub-tile from shared memory (ThreadAccumulator::multiply);
//   * the problem's store_tile writes the accumulators out.
//
// A problem provides:
//   using acc_t;                       accumulation type
//   int64_t num_tiles;                 tiles of C (the grid strides over them)
//   TileState begin_tile(tile, row);   per-thread state for one tile: the
//                                      step range [step_begin, step_end) and
//                                      whatever load_step needs for this
//                                      thread's loader row
//   bool step_contributes(state, step) false when a whole step is known to
//                                      add nothing; must be uniform over the
//                                      block (it guards barriers)
//   void load_step(state, step, row, slot, tiles)
//                                      writes tiles.a[slot + p*kSlotsPerPass][row]
//                                      and tiles.b[...][row] for p < kLoadPasses
//   void store_tile(state, acc, row0, col0)
//
// The problem's member functions are PYCNN_HOST_DEVICE, so that
// tests/cuda_emulation can run a problem through this same tiling on the CPU.
//
// Summation order is fixed by the tiling (every element of C is summed by
// one thread, K in increasing order), so results are bitwise reproducible.
// Later work moves multiply() onto tensor cores (mma.sync / wgmma) and the
// loads onto cp.async with a multi-stage pipeline; both changes stay inside
// SharedTiles, ThreadAccumulator and the load_step functions.
#pragma once

#include <cstdint>

#include "cuda_common.cuh"

namespace pycnn {
namespace gpu {

constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kGemmThreads = 256;
constexpr int kThreadM = 4;  // rows of C per thread
constexpr int kThreadN = 4;  // columns of C per thread
constexpr int kThreadsAlongN = kTileN / kThreadN;
static_assert((kTileM / kThreadM) * kThreadsAlongN == kGemmThreads,
              "the threads of a block must cover the C tile exactly");

// Loaders: thread t fills row t % kLoadRows (an m of A and an n of B) in
// slots (k) t / kLoadRows + p * kSlotsPerPass for p < kLoadPasses.
constexpr int kLoadRows = kTileM;
constexpr int kSlotsPerPass = kGemmThreads / kLoadRows;
constexpr int kLoadPasses = kTileK / kSlotsPerPass;
static_assert(kTileM == kTileN, "one loader row indexes both A's m and B's n");
static_assert(kSlotsPerPass * kLoadPasses == kTileK, "loaders must fill every k slot");

// K-major tiles: a[k][m] and b[k][n], so that a thread's kThreadM (kThreadN)
// consecutive values are one vector load and a warp's loader stores are
// consecutive addresses.
template <typename acc_t>
struct alignas(16) SharedTiles {
  acc_t a[kTileK][kTileM];
  acc_t b[kTileK][kTileN];
};

template <typename acc_t>
struct ThreadAccumulator {
  acc_t v[kThreadM][kThreadN];

  PYCNN_HOST_DEVICE __forceinline__ void zero() {
#pragma unroll
    for (int i = 0; i < kThreadM; ++i)
#pragma unroll
      for (int j = 0; j < kThreadN; ++j) v[i][j] = acc_t(0);
  }

  // v += A[row0 .. row0+kThreadM, :] * B[:, col0 .. col0+kThreadN] over one K tile.
  PYCNN_HOST_DEVICE __forceinline__ void multiply(const SharedTiles<acc_t>& tiles, int row0, int col0) {
#pragma unroll
    for (int k = 0; k < kTileK; ++k) {
      acc_t a[kThreadM], b[kThreadN];
#pragma unroll
      for (int i = 0; i < kThreadM; ++i) a[i] = tiles.a[k][row0 + i];
#pragma unroll
      for (int j = 0; j < kThreadN; ++j) b[j] = tiles.b[k][col0 + j];
#pragma unroll
      for (int i = 0; i < kThreadM; ++i)
#pragma unroll
        for (int j = 0; j < kThreadN; ++j) v[i][j] += a[i] * b[j];
    }
  }
};

template <typename Problem>
__global__ void __launch_bounds__(kGemmThreads) implicit_gemm_kernel(const Problem problem) {
  using acc_t = typename Problem::acc_t;
  __shared__ SharedTiles<acc_t> tiles;
  const int tid = threadIdx.x;
  const int load_row = tid % kLoadRows;
  const int load_slot = tid / kLoadRows;
  const int row0 = (tid / kThreadsAlongN) * kThreadM;
  const int col0 = (tid % kThreadsAlongN) * kThreadN;
  for (int64_t tile = blockIdx.x; tile < problem.num_tiles; tile += gridDim.x) {
    const typename Problem::TileState state = problem.begin_tile(tile, load_row);
    ThreadAccumulator<acc_t> acc;
    acc.zero();
    for (int64_t step = state.step_begin; step < state.step_end; ++step) {
      if (!problem.step_contributes(state, step)) continue;
      problem.load_step(state, step, load_row, load_slot, tiles);
      __syncthreads();
      acc.multiply(tiles, row0, col0);
      __syncthreads();  // the next step overwrites the tiles
    }
    problem.store_tile(state, acc, row0, col0);
  }
}

template <typename Problem>
void launch_implicit_gemm(const Problem& problem, cudaStream_t stream) {
  if (problem.num_tiles == 0) return;
  implicit_gemm_kernel<Problem>
      <<<blocks_for(problem.num_tiles, 1), kGemmThreads, 0, stream>>>(problem);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// The K axis of forward and grad_input: the filter taps (r, s) times the
// reduced channels of one group (input channels for the forward, output
// channels for grad_input).  Normally a step is one tap and kTileK
// consecutive channels ("tap-major"): the tap is uniform over the block, so
// per-tap work (bounds, stride phases) is done once per step.  With fewer
// channels than kTileK that would leave most of each step empty, so steps
// then walk the flattened (channel, r, s) index in weight order instead.
struct TapChannel {
  int64_t channel, r, s;
  bool valid;
};

struct TapChannelAxis {
  int64_t channels, kernel_h, kernel_w;
  int64_t chunks;  // kTileK-channel chunks per tap (tap-major only)
  bool flat;
  int64_t steps;

  static TapChannelAxis make(int64_t channels, int64_t kernel_h, int64_t kernel_w) {
    TapChannelAxis axis{};
    axis.channels = channels;
    axis.kernel_h = kernel_h;
    axis.kernel_w = kernel_w;
    axis.flat = channels < kTileK;
    if (axis.flat) {
      axis.chunks = 0;
      axis.steps = div_ceil(channels * kernel_h * kernel_w, kTileK);
    } else {
      axis.chunks = div_ceil(channels, kTileK);
      axis.steps = kernel_h * kernel_w * axis.chunks;
    }
    return axis;
  }

  // The tap of a tap-major step.
  PYCNN_HOST_DEVICE __forceinline__ void tap_of(int64_t step, int64_t& r, int64_t& s) const {
    const int64_t tap = step / chunks;
    r = tap / kernel_w;
    s = tap - r * kernel_w;
  }

  PYCNN_HOST_DEVICE __forceinline__ TapChannel at(int64_t step, int slot) const {
    TapChannel t;
    if (flat) {
      const int64_t taps = kernel_h * kernel_w;
      const int64_t k = step * kTileK + slot;
      t.channel = k / taps;
      const int64_t rs = k - t.channel * taps;
      t.r = rs / kernel_w;
      t.s = rs - t.r * kernel_w;
    } else {
      tap_of(step, t.r, t.s);
      t.channel = (step % chunks) * kTileK + slot;
    }
    t.valid = t.channel < channels;
    return t;
  }
};

}  // namespace gpu
}  // namespace pycnn
