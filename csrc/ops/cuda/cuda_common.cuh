// Helpers shared by pycnn's CUDA kernels: strides and coordinates of 4-D
// tensors, and the two generic kernels most ops are written with:
//   * elementwise_kernel: op(i) for every output element i (grid-stride);
//   * block_reduce_kernel: one block per output element, summing its terms
//     in a fixed order, so that reductions give bitwise the same result run
//     after run.
// The per-element work lives in functors whose call operators are
// PYCNN_HOST_DEVICE, so that tests/cuda_emulation can run the very same code
// on the CPU.  Everything that indexes memory is int64_t.
#pragma once

#include <ATen/NumericUtils.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../../shape.h"

namespace pycnn {
namespace gpu {

// Element strides of a 4-D tensor in (N, C, H, W) order, whatever its
// memory layout: kernels index through these, so contiguous, channels_last
// and sliced views all take the same code path.
struct Strides4d {
  int64_t n, c, h, w;
};

// The same in int, for the fast kernels (every offset checked to fit).
struct Strides4i {
  int n, c, h, w;
  PYCNN_HOST_DEVICE __forceinline__ int at(int n_, int c_, int h_, int w_) const {
    return n_ * n + c_ * c + h_ * h + w_ * w;
  }
};

inline Strides4i strides32_of(const at::Tensor& t) {
  return {int(t.stride(0)), int(t.stride(1)), int(t.stride(2)), int(t.stride(3))};
}

// torch's rule for max pooling, in every pycnn max kernel: a NaN takes the
// place of the maximum (so the last NaN wins), and among equal values the
// first one stays.
template <typename acc_t>
PYCNN_HOST_DEVICE __forceinline__ bool replaces_max(acc_t candidate, acc_t best) {
  return candidate > best || at::_isnan(candidate);
}

// Max-pool backward in gather form: the sum of grad_output over the outputs
// [oh.first, oh.last) x [ow.first, ow.last) whose index chose `target`, in
// window order (fixed, no atomics).
template <typename acc_t, typename scalar_t, typename Range>
PYCNN_HOST_DEVICE acc_t sum_where_chosen(const scalar_t* go_plane, const Strides4d& go_s,
                                         const int64_t* idx_plane, const Strides4d& idx_s,
                                         Range oh, Range ow, int64_t target) {
  acc_t acc = acc_t(0);
  for (int64_t h = oh.first; h < oh.last; ++h)
    for (int64_t w = ow.first; w < ow.last; ++w)
      if (idx_plane[h * idx_s.h + w * idx_s.w] == target) {
        acc += static_cast<acc_t>(go_plane[h * go_s.h + w * go_s.w]);
      }
  return acc;
}

inline Strides4d strides_of(const at::Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
}

PYCNN_HOST_DEVICE __forceinline__ int64_t offset_of(const Strides4d& s, int64_t n, int64_t c, int64_t h,
                                                    int64_t w) {
  return n * s.n + c * s.c + h * s.h + w * s.w;
}

struct Coord4d {
  int64_t n, c, h, w;
};

// Coordinates of the index-th element of an (N, C, H, W) tensor counted in
// its memory order, (n, h, w, c) for channels_last and (n, c, h, w)
// otherwise, so that neighbouring threads touch neighbouring addresses.
PYCNN_HOST_DEVICE __forceinline__ Coord4d coord_in_memory_order(int64_t index, int64_t channels,
                                                                int64_t height, int64_t width,
                                                                bool channels_last) {
  Coord4d p;
  if (channels_last) {
    p.c = index % channels;
    index /= channels;
    p.w = index % width;
    index /= width;
    p.h = index % height;
    p.n = index / height;
  } else {
    p.w = index % width;
    index /= width;
    p.h = index % height;
    index /= height;
    p.c = index % channels;
    p.n = index / channels;
  }
  return p;
}

// kV elements of T as one aligned vector access (16 bytes: LDG.128 / STG.128).
template <typename T, int kV>
struct alignas(sizeof(T) * kV) Pack {
  T v[kV];
};

// Vector loads and stores of consecutive elements: one instruction on the
// device; memcpy on the host, where reading T objects through a Pack would
// break the host compiler's strict-aliasing rules (seen: gcc -O2 reordering
// bfloat16 stores past such a load in the emulator).
template <typename T, int kV>
PYCNN_HOST_DEVICE __forceinline__ Pack<T, kV> load_pack(const T* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const Pack<T, kV>*>(p);
#else
  Pack<T, kV> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
#endif
}

template <typename T, int kV>
PYCNN_HOST_DEVICE __forceinline__ void store_pack(T* p, const Pack<T, kV>& v) {
#if defined(__CUDA_ARCH__)
  *reinterpret_cast<Pack<T, kV>*>(p) = v;
#else
  std::memcpy(p, &v, sizeof(v));
#endif
}

// Grid-stride loops: the grid never exceeds what a launch allows, and a
// loop covers whatever the grid does not.
constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = std::numeric_limits<int32_t>::max();

inline unsigned int blocks_for(int64_t work_items, int64_t items_per_block) {
  const int64_t blocks = (work_items + items_per_block - 1) / items_per_block;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(blocks, kMaxBlocks)));
}

__device__ __forceinline__ int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

__device__ __forceinline__ int64_t global_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// Elementwise kernels: an Op provides PYCNN_HOST_DEVICE void operator()(int64_t i) const,
// called once for every i < count.
template <typename Op>
__global__ void elementwise_kernel(const Op op, int64_t count) {
  for (int64_t i = global_thread_index(); i < count; i += global_thread_count()) op(i);
}

template <typename Op>
void launch_elementwise(const Op& op, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  elementwise_kernel<Op><<<blocks_for(count, kThreadsPerBlock), kThreadsPerBlock, 0, stream>>>(
      op, count);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Launches op(i) for i < count (count < 2^31), one item per thread.
template <class Op>
void launch_items(const Op& op, int64_t count, cudaStream_t stream);

#if defined(__CUDACC__)
template <class Op>
__global__ void __launch_bounds__(kThreadsPerBlock, 2) items_kernel(const Op op, int count) {
  const int i = blockIdx.x * kThreadsPerBlock + threadIdx.x;
  if (i < count) op(i);
}

template <class Op>
void launch_items(const Op& op, int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  const unsigned blocks = unsigned((count + kThreadsPerBlock - 1) / kThreadsPerBlock);
  items_kernel<Op><<<blocks, kThreadsPerBlock, 0, stream>>>(op, int(count));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

// Sum of one value per thread over a block of kThreads threads, by a fixed
// tree: the result does not depend on timing.  Every thread of the block
// must call it (it synchronises); all of them get the sum.
template <int kThreads, typename T>
__device__ T block_sum(T value, T* scratch /* kThreads elements of shared memory */) {
  static_assert((kThreads & (kThreads - 1)) == 0, "block_sum needs a power-of-two block");
  const int tid = threadIdx.x;
  scratch[tid] = value;
  __syncthreads();
#pragma unroll
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (tid < half) scratch[tid] += scratch[tid + half];
    __syncthreads();
  }
  const T total = scratch[0];
  __syncthreads();  // scratch may be reused as soon as this returns
  return total;
}

// Block reductions: for every e < red.outputs, red.store(e, sum over
// j < red.length of red.term(e, j)).  One block per e; thread t sums the
// terms j = t, t + kThreadsPerBlock, ... in increasing order, then
// block_sum adds the threads' sums: a fixed order.  A Reduction provides
//   using acc_t;  int64_t outputs, length;
//   PYCNN_HOST_DEVICE acc_t term(int64_t e, int64_t j) const;
//   PYCNN_HOST_DEVICE void store(int64_t e, acc_t sum) const;
template <typename Reduction>
__global__ void __launch_bounds__(kThreadsPerBlock) block_reduce_kernel(const Reduction red) {
  using acc_t = typename Reduction::acc_t;
  __shared__ acc_t scratch[kThreadsPerBlock];
  for (int64_t e = blockIdx.x; e < red.outputs; e += gridDim.x) {
    acc_t acc = acc_t(0);
    for (int64_t j = threadIdx.x; j < red.length; j += kThreadsPerBlock) acc += red.term(e, j);
    const acc_t sum = block_sum<kThreadsPerBlock>(acc, scratch);
    if (threadIdx.x == 0) red.store(e, sum);
  }
}

template <typename Reduction>
void launch_block_reduce_once(const Reduction& red, cudaStream_t stream) {
  if (red.outputs == 0) return;
  block_reduce_kernel<Reduction><<<blocks_for(red.outputs, 1), kThreadsPerBlock, 0, stream>>>(red);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// A long sum over few outputs (grad_bias of six channels over a batch of
// 800k pixels) would keep six blocks busy and the rest of the GPU idle, so
// it goes in two passes: each output's terms in chunks, one block per
// (output, chunk), then each output's chunk sums added in chunk order.  The
// split depends on the shape only: the result is the same run after run.
struct ReduceSplit {
  int64_t chunks, chunk_length;
};

inline ReduceSplit reduce_split(int64_t outputs, int64_t length) {
  constexpr int64_t kTargetBlocks = 1024;
  constexpr int64_t kMinChunk = 16 * kThreadsPerBlock;
  const int64_t by_blocks = (kTargetBlocks + outputs - 1) / std::max<int64_t>(outputs, 1);
  const int64_t by_length = (length + kMinChunk - 1) / kMinChunk;
  const int64_t wanted = std::max<int64_t>(1, std::min(by_blocks, by_length));
  const int64_t chunk_length = (length + wanted - 1) / wanted;
  return {chunk_length == 0 ? 1 : (length + chunk_length - 1) / chunk_length, chunk_length};
}

// Pass 1: partial[e * chunks + chunk] = the sum of red's terms
// j in [chunk * chunk_length, (chunk + 1) * chunk_length) of output e.
template <typename Reduction>
struct ChunkSums {
  using acc_t = typename Reduction::acc_t;
  Reduction red;
  acc_t* partial;
  int64_t chunks, chunk_length;
  int64_t outputs, length;  // red.outputs * chunks; chunk_length

  PYCNN_HOST_DEVICE acc_t term(int64_t e, int64_t j) const {
    const int64_t out = e / chunks;
    const int64_t jj = (e - out * chunks) * chunk_length + j;
    return jj < red.length ? red.term(out, jj) : acc_t(0);
  }
  PYCNN_HOST_DEVICE void store(int64_t e, acc_t sum) const { partial[e] = sum; }
};

// Pass 2: store.store(e, the sum of partial[e * chunks + 0 .. chunks - 1]).
template <typename acc_t_, typename Store>
struct ChunkTotals {
  using acc_t = acc_t_;
  Store store_to;
  const acc_t* partial;
  int64_t outputs, length;  // outputs; chunks

  PYCNN_HOST_DEVICE acc_t term(int64_t e, int64_t j) const { return partial[e * length + j]; }
  PYCNN_HOST_DEVICE void store(int64_t e, acc_t sum) const { store_to.store(e, sum); }
};

// Runs red through run_once (a launch, or the emulator's loop), in two
// passes where reduce_split splits it; `workspace(n)` returns n acc_t.
template <typename Reduction, typename Workspace, typename RunOnce>
void run_block_reduce(const Reduction& red, Workspace&& workspace, RunOnce&& run_once) {
  using acc_t = typename Reduction::acc_t;
  const ReduceSplit split = reduce_split(red.outputs, red.length);
  if (split.chunks <= 1) return run_once(red);
  acc_t* partial = workspace(red.outputs * split.chunks);
  run_once(ChunkSums<Reduction>{red, partial, split.chunks, split.chunk_length,
                                red.outputs * split.chunks, split.chunk_length});
  run_once(ChunkTotals<acc_t, Reduction>{red, partial, red.outputs, split.chunks});
}

// acc_t scratch on the current CUDA device, from torch's caching allocator
// (freed, stream-ordered, when the tensor goes).
template <typename acc_t>
at::Tensor device_scratch(int64_t count) {
  return at::empty({count}, at::TensorOptions()
                                .dtype(c10::CppTypeToScalarType<acc_t>::value)
                                .device(at::kCUDA, c10::cuda::current_device()));
}

template <typename Reduction>
void launch_block_reduce(const Reduction& red, cudaStream_t stream) {
  using acc_t = typename Reduction::acc_t;
  at::Tensor scratch;
  run_block_reduce(
      red,
      [&](int64_t n) {
        scratch = device_scratch<acc_t>(n);
        return scratch.mutable_data_ptr<acc_t>();
      },
      [&](const auto& pass) { launch_block_reduce_once(pass, stream); });
}

}  // namespace gpu
}  // namespace pycnn
