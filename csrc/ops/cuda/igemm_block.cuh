// The pipelined implicit-GEMM thread block shared by every fast convolution
// kernel, and its two maths:
//   TcMath    tensor cores (mma.sync m16n8k16 f16/bf16, m16n8k8 tf32) on
//             swizzled 16-byte-granule tiles (igemm_layout.cuh);
//   SimtMath  float FFMA for exact float32: 128 x BN tiles, 8 x 8 (or 8 x 4)
//             outputs per thread from [k][m] tiles read as float4.
//
// The block (IgemmBlock::run) is a multistage cp.async pipeline in the
// Ampere style: kStages - 1 K steps are in flight while the warps multiply
// the oldest; each iteration issues the copies of step kt + kStages - 1 into
// the stage step kt - 1 used (all warps passed the barrier that ended step
// kt - 1), multiplies stage kt, then waits for step kt + 1 and synchronises.
// It is written against an Exec (mma_ops.cuh's DeviceBlockExec on the GPU;
// tests/cuda_emulation's host model on the CPU, which also checks the
// barrier discipline), so the code the emulator runs is this code.
//
// Summation order: each output element is summed by one thread, K in
// increasing order (within an mma instruction the hardware's own fixed
// order), whatever the tile shape: results do not depend on the tile
// chosen, and are bitwise repeatable.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>

#include <atomic>
#include <cstdint>
#include <type_traits>

#include "conv_gemm.cuh"
#include "igemm_layout.cuh"
#include "mma_ops.cuh"

namespace pycnn {
namespace gpu {

template <class Cfg>
struct TcMath {
  using Config = Cfg;
  static constexpr int BM = Cfg::BM, BN = Cfg::BN, BK = Cfg::BK;
  static constexpr int kThreads = Cfg::kThreads, kStages = Cfg::kStages;
  static constexpr int kV = Cfg::kV, kCopyBytes = 16;
  // Blocks per SM the register budget is set for: 2 x 256 or 4 x 128
  // threads (128 registers each), 3 x 128 for the 128 x 64 tile, whose
  // threads copy four A rows each (168 registers).
  static constexpr int kMinBlocks = kThreads == 256 ? 2 : (BM * BN > 64 * 64 ? 3 : 4);
  // K-contiguous: BM rows of 64 bytes; M-contiguous: BK rows of BM elements.
  // Either way BM x 64 bytes.
  static constexpr int kABytes = BM * 64, kBBytes = BN * 64;

  template <int kRows>
  using KTile = KContigTile<kRows>;
  template <int kCols>
  using MNTile = std::conditional_t<Cfg::kElemBytes == 2, MNContigTile16<kCols>, MNContigTile32<kCols>>;

  struct Acc {
    float v[Cfg::MI][Cfg::NI][4];
  };

  PYCNN_HOST_DEVICE static __forceinline__ int warp_m0(int warp) { return (warp % Cfg::WarpsM) * Cfg::WM; }
  PYCNN_HOST_DEVICE static __forceinline__ int warp_n0(int warp) { return (warp / Cfg::WarpsM) * Cfg::WN; }

  PYCNN_HOST_DEVICE static __forceinline__ void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < Cfg::MI; ++i)
#pragma unroll
      for (int j = 0; j < Cfg::NI; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) acc.v[i][j][r] = 0.f;
  }

  template <class ATile, class BTile, class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void compute(const Ops& ops, const uint8_t* a,
                                                        const uint8_t* b, int warp, int lane,
                                                        Acc& acc) {
    warp_mma_stage<Cfg, ATile, BTile>(ops, a, b, warp_m0(warp), warp_n0(warp), lane, acc.v);
  }

  template <class Sink>
  PYCNN_HOST_DEVICE static __forceinline__ void epilogue(const Sink& sink, int warp, int lane,
                                                         const Acc& acc) {
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const auto row = sink.row(acc_row(warp_m0(warp), mi, 2 * h, lane));
#pragma unroll
        for (int ni = 0; ni < Cfg::NI; ++ni) {
          sink.pair(row, acc_col(warp_n0(warp), ni, 0, lane), acc.v[mi][ni][2 * h],
                    acc.v[mi][ni][2 * h + 1]);
        }
      }
    }
  }
};

// FFMA for float: 256 threads as a 16 x 16 grid, thread (tx, ty) owning rows
// ty*4 + {0..3} and 64 + ty*4 + {0..3} and columns tx*4 + {0..3} (and
// 64 + tx*4 + {0..3} when BN = 128).  A warp is 8 tx by 4 ty: its float4
// loads of a K row touch 4 A and 8 B addresses (broadcast, one wavefront).
// Tiles are [k][m] with rows padded by 4 floats (a thread's 4 K-fast element
// copies of one K-contiguous row land in distinct banks).
template <int kBN, int kStagesArg>
struct SimtMath {
  static constexpr int BM = 128, BN = kBN, BK = 16;
  static constexpr int kThreads = 256, kStages = kStagesArg;
  static constexpr int kV = 1, kCopyBytes = 4;
  static constexpr int kMinBlocks = 2;
  static constexpr int TN = BN / 16;  // columns per thread: 8 or 4
  static_assert(BN == 128 || BN == 64, "SimtMath tiles are 128 x 128 or 128 x 64");
  static constexpr int kAStride = BM + 4, kBStride = BN + 4;  // floats per K row
  static constexpr int kABytes = BK * kAStride * 4, kBBytes = BK * kBStride * 4;

  // A K-contiguous operand's tile: row = m (or n), column = k.
  template <int kRows>
  struct KTile {
    PYCNN_HOST_DEVICE static __forceinline__ int offset(int row, int col) {
      return (col * (kRows + 4) + row) * 4;
    }
  };
  // An M/N-contiguous operand's tile: row = k, column = m (or n).
  template <int kCols>
  struct MNTile {
    PYCNN_HOST_DEVICE static __forceinline__ int offset(int row, int col) {
      return (row * (kCols + 4) + col) * 4;
    }
  };

  struct Acc {
    float v[8][TN];
  };

  PYCNN_HOST_DEVICE static __forceinline__ int tx(int warp, int lane) { return (warp & 1) * 8 + (lane & 7); }
  PYCNN_HOST_DEVICE static __forceinline__ int ty(int warp, int lane) { return (warp >> 1) * 4 + (lane >> 3); }
  PYCNN_HOST_DEVICE static __forceinline__ int row_of(int ty, int i) { return ty * 4 + (i & 3) + (i >> 2) * 64; }
  PYCNN_HOST_DEVICE static __forceinline__ int col_of(int tx, int j) { return tx * 4 + (j & 3) + (j >> 2) * 64; }

  PYCNN_HOST_DEVICE static __forceinline__ void zero(Acc& acc) {
#pragma unroll
    for (int i = 0; i < 8; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc.v[i][j] = 0.f;
  }

  template <class ATile, class BTile, class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void compute(const Ops& ops, const uint8_t* a,
                                                        const uint8_t* b, int warp, int lane,
                                                        Acc& acc) {
    const int x = tx(warp, lane), y = ty(warp, lane);
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      float av[8], bv[TN];
      ops.load_shared_f4(av, a, (k * kAStride + y * 4) * 4, lane);
      ops.load_shared_f4(av + 4, a, (k * kAStride + 64 + y * 4) * 4, lane);
      ops.load_shared_f4(bv, b, (k * kBStride + x * 4) * 4, lane);
      if constexpr (TN == 8) ops.load_shared_f4(bv + 4, b, (k * kBStride + 64 + x * 4) * 4, lane);
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc.v[i][j] = fmaf(av[i], bv[j], acc.v[i][j]);
    }
  }

  template <class Sink>
  PYCNN_HOST_DEVICE static __forceinline__ void epilogue(const Sink& sink, int warp, int lane,
                                                         const Acc& acc) {
    const int x = tx(warp, lane), y = ty(warp, lane);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const auto row = sink.row(row_of(y, i));
#pragma unroll
      for (int j = 0; j < TN; j += 2) sink.pair(row, col_of(x, j), acc.v[i][j], acc.v[i][j + 1]);
    }
  }
};

template <class Math, class Gemm>
struct IgemmBlock {
  using Params = typename Gemm::Params;
  using Tile = typename Gemm::Tile;
  using ATile = std::conditional_t<Gemm::kKContiguous, typename Math::template KTile<Math::BM>,
                                   typename Math::template MNTile<Math::BM>>;
  using BTile = std::conditional_t<Gemm::kKContiguous, typename Math::template KTile<Math::BN>,
                                   typename Math::template MNTile<Math::BN>>;
  using Producer = typename Gemm::template Producer<Math, ATile, BTile>;

  struct ThreadState {
    Producer producer;
    typename Math::Acc acc;
  };

  static constexpr int kThreads = Math::kThreads;
  static constexpr int kMinBlocks = Math::kMinBlocks;
  static constexpr int kStages = Math::kStages;
  static constexpr int kStageBytes = Math::kABytes + Math::kBBytes;
  static constexpr int kSmemBytes = kStageBytes * kStages;

  template <class Exec>
  PYCNN_HOST_DEVICE static void run(Exec& ex, const Params& p, uint8_t* smem, int bx, int by, int bz) {
    const Tile tile = Gemm::tile(p, bx, by, bz, Math::BM, Math::BN, Math::BK);
    if (!tile.active) return;
    const int steps = tile.k_steps;
    ex.threads([&](int tid, ThreadState& st, const auto&) {
      st.producer.begin(p, tile, tid);
      Math::zero(st.acc);
    });
    const auto load = [&](int stage) {
      uint8_t* a = smem + stage * kStageBytes;
      ex.threads([&](int tid, ThreadState& st, const auto& copier) {
        st.producer.load(copier, tid, a, a + Math::kABytes, p, tile);
        st.producer.advance(p, tile);
      });
    };
#pragma unroll 1
    for (int s = 0; s < kStages - 1; ++s) {
      if (s < steps) load(s);
      ex.commit();
    }
    ex.template wait<kStages - 2>();
    ex.sync();
#pragma unroll 1
    for (int kt = 0; kt < steps; ++kt) {
      if (kt + kStages - 1 < steps) load((kt + kStages - 1) % kStages);
      ex.commit();
      const uint8_t* stage = smem + (kt % kStages) * kStageBytes;
      ex.warps([&](int warp, int lane, ThreadState& st, const auto& ops) {
        Math::template compute<ATile, BTile>(ops, stage, stage + Math::kABytes, warp, lane, st.acc);
      });
      ex.template wait<kStages - 2>();
      ex.sync();
    }
    const typename Gemm::Sink sink{p, tile};
    ex.warps([&](int warp, int lane, ThreadState& st, const auto&) {
      Math::epilogue(sink, warp, lane, st.acc);
    });
  }
};

#if defined(__CUDACC__)
template <class Block>
__global__ void __launch_bounds__(Block::kThreads, Block::kMinBlocks) igemm_kernel(const __grid_constant__ typename Block::Params p) {
  extern __shared__ __align__(128) uint8_t igemm_smem[];
  DeviceBlockExec<typename Block::ThreadState> ex;
  ex.tid = threadIdx.x;
  Block::run(ex, p, igemm_smem, blockIdx.x, blockIdx.y, blockIdx.z);
}

// Launches a block kernel on `grid` (x: M tiles, y: N tiles, z: groups x
// phases or splits).  Blocks over 48 KiB of shared memory need the opt-in,
// once per device.
template <class Block>
void launch_igemm(const typename Block::Params& p, dim3 grid, cudaStream_t stream) {
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
  if constexpr (Block::kSmemBytes > 48 * 1024) {
    static std::atomic<uint64_t> configured{0};
    const int device = c10::cuda::current_device();
    const uint64_t bit = uint64_t(1) << (device & 63);
    if (!(configured.load() & bit)) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(igemm_kernel<Block>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          Block::kSmemBytes));
      configured.fetch_or(bit);
    }
  }
  igemm_kernel<Block><<<grid, Block::kThreads, Block::kSmemBytes, stream>>>(p);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}
#endif

}  // namespace gpu
}  // namespace pycnn
