// Shared-memory tile layouts of the tensor-core implicit GEMM and the maps
// between a warp's registers and matrix coordinates.  Everything here is
// index arithmetic, host-callable, so that tests/cuda_emulation checks it
// against a model of ldmatrix and mma.sync written from the PTX ISA's
// fragment figures (and checks that every swizzle is a permutation and every
// ldmatrix phase free of bank conflicts).
//
// Tiles hold 16-byte granules (8 half/bfloat16 or 4 float), the unit of a
// cp.async copy.  An operand tile is one of:
//   KContigTile   rows = M (or N) indices, each row one K slice of 64 bytes
//                 (4 granules): operands whose K dimension is contiguous in
//                 memory (NHWC activations and KRSC weights of the forward
//                 and grad_input GEMMs);
//   MNContigTile  rows = K indices, each row kCols elements of M (or N):
//                 operands contiguous along M or N (grad_weight's operands,
//                 whose K is the pixels).
// The granule index of a row is XOR-swizzled so that the eight 16-byte rows
// one ldmatrix phase reads fall in eight different bank groups.
#pragma once

#include <cstdint>

#include "mma_ops.cuh"

namespace pycnn {
namespace gpu {

// Tile shape of a tensor-core kernel.  K per stage is 64 bytes: 32
// half/bfloat16 or 16 float (tf32) elements, two mma K steps.
template <MmaKind kKind, int kBM, int kBN, int kWarpsM, int kWarpsN, int kStagesArg>
struct TcConfig {
  static constexpr MmaKind kind = kKind;
  static constexpr int kElemBytes = kKind == MmaKind::kTF32 ? 4 : 2;
  static constexpr int kV = 16 / kElemBytes;  // elements per granule
  static constexpr int BM = kBM, BN = kBN;
  static constexpr int BK = 64 / kElemBytes;
  static constexpr int kMmaK = kKind == MmaKind::kTF32 ? 8 : 16;
  static constexpr int kKSteps = BK / kMmaK;
  static constexpr int WarpsM = kWarpsM, WarpsN = kWarpsN;
  static constexpr int kWarps = kWarpsM * kWarpsN;
  static constexpr int kThreads = 32 * kWarps;
  static constexpr int WM = BM / kWarpsM, WN = BN / kWarpsN;  // warp tile
  static constexpr int MI = WM / 16, NI = WN / 8;             // mma tiles per warp
  static constexpr int kStages = kStagesArg;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "a warp tile is whole m16 x n16 blocks");
  static_assert(kKSteps == 2, "a stage is two mma K steps");
};

// Row r, granule g of a K-contiguous tile (64-byte rows).  Rows r and r+1
// share a 128-byte line; XOR with (r / 2) % 4 spreads eight consecutive rows
// at one granule over the eight 16-byte bank groups.
PYCNN_HOST_DEVICE __forceinline__ int kcontig_offset(int row, int granule) {
  return row * 64 + ((granule ^ ((row >> 1) & 3)) << 4);
}

template <int kRows>
struct KContigTile {
  static constexpr int kBytes = kRows * 64;
  static constexpr int kGranulesPerRow = 4;
  PYCNN_HOST_DEVICE static __forceinline__ int offset(int row, int granule) {
    return kcontig_offset(row, granule);
  }

  // A fragments of the m16 block at rows m0.., K step kk (ldmatrix .x4:
  // matrix j = lane / 8 is rows m0 + 8 (j % 2).., granule 2 kk + j / 2).
  // For tf32 the granules are 4 floats and ldmatrix's 16-bit pairs are the
  // floats; the registers are then a0..a3 of m16n8k8.
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_a(const Ops& ops, const uint8_t* base,
                                                        uint32_t (&a)[4], int m0, int kk, int lane) {
    ops.template ldmatrix_x4<false>(a, base, lane, [=](int l) {
      return offset(m0 + ((l >> 3) & 1) * 8 + (l & 7), kk * 2 + (l >> 4));
    });
  }

  // B fragments of the n8 blocks n0.. and n0+8.. (matrix j: rows
  // n0 + 8 (j / 2).., granule 2 kk + j % 2).
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_b_pair(const Ops& ops, const uint8_t* base,
                                                             uint32_t (&b0)[2], uint32_t (&b1)[2],
                                                             int n0, int kk, int lane) {
    uint32_t r[4];
    ops.template ldmatrix_x4<false>(r, base, lane, [=](int l) {
      return offset(n0 + (l >> 4) * 8 + (l & 7), kk * 2 + ((l >> 3) & 1));
    });
    b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
  }
};

// Row r (a K index), granule g of an M/N-contiguous tile of 16-bit elements.
// Rows are at least 128 bytes; XOR with r % 8 spreads eight consecutive rows.
template <int kCols>
struct MNContigTile16 {
  static constexpr int kRowBytes = kCols * 2;
  static constexpr int kGranulesPerRow = kRowBytes / 16;
  static_assert(kGranulesPerRow >= 8 && kGranulesPerRow % 8 == 0, "rows of 8k granules");
  template <int kRows>
  struct Bytes {
    static constexpr int value = kRows * kRowBytes;
  };
  PYCNN_HOST_DEVICE static __forceinline__ int offset(int row, int granule) {
    return row * kRowBytes + ((granule ^ (row & 7)) << 4);
  }

  // ldmatrix .trans: matrix j holds K rows 16 kk + 8 (j / 2).. and M columns
  // m0 + 8 (j % 2)..; transposed, it gives a0..a7 of m16n8k16.
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_a(const Ops& ops, const uint8_t* base,
                                                        uint32_t (&a)[4], int m0, int kk, int lane) {
    ops.template ldmatrix_x4<true>(a, base, lane, [=](int l) {
      return offset(kk * 16 + (l >> 4) * 8 + (l & 7), (m0 + ((l >> 3) & 1) * 8) >> 3);
    });
  }

  // Matrix j: K rows 16 kk + 8 (j % 2).., N columns n0 + 8 (j / 2)...
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_b_pair(const Ops& ops, const uint8_t* base,
                                                             uint32_t (&b0)[2], uint32_t (&b1)[2],
                                                             int n0, int kk, int lane) {
    uint32_t r[4];
    ops.template ldmatrix_x4<true>(r, base, lane, [=](int l) {
      return offset(kk * 16 + ((l >> 3) & 1) * 8 + (l & 7), (n0 + (l >> 4) * 8) >> 3);
    });
    b0[0] = r[0], b0[1] = r[1], b1[0] = r[2], b1[1] = r[3];
  }
};

// The same for float (tf32): ldmatrix cannot transpose 32-bit elements, so
// fragments are gathered with 32-bit shared loads.  Lane (g = lane / 4,
// t = lane % 4) reads K rows t and t + 4 of a step; XOR with 2 (r % 4) puts
// the two granules of its row in distinct bank groups for all four t.
template <int kCols>
struct MNContigTile32 {
  static constexpr int kRowBytes = kCols * 4;
  static constexpr int kGranulesPerRow = kRowBytes / 16;
  static_assert(kGranulesPerRow >= 8 && kGranulesPerRow % 8 == 0, "rows of 8k granules");
  PYCNN_HOST_DEVICE static __forceinline__ int offset(int row, int granule) {
    return row * kRowBytes + ((granule ^ ((row & 3) << 1)) << 4);
  }
  PYCNN_HOST_DEVICE static __forceinline__ int element(int row, int col) {
    return offset(row, col >> 2) + (col & 3) * 4;
  }

  // a0: (m0 + g, 8 kk + t), a1: (m0 + g + 8, ..), a2: (m0 + g, 8 kk + t + 4), a3.
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_a(const Ops& ops, const uint8_t* base,
                                                        uint32_t (&a)[4], int m0, int kk, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 4; ++r)
      a[r] = ops.load_shared_u32(base, element(kk * 8 + t + (r >> 1) * 4, m0 + g + (r & 1) * 8),
                                 lane);
  }

  // b0: (8 kk + t, n0 + g), b1: (8 kk + t + 4, n0 + g); and the same for n0 + 8.
  template <class Ops>
  PYCNN_HOST_DEVICE static __forceinline__ void load_b_pair(const Ops& ops, const uint8_t* base,
                                                             uint32_t (&b0)[2], uint32_t (&b1)[2],
                                                             int n0, int kk, int lane) {
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      b0[r] = ops.load_shared_u32(base, element(kk * 8 + t + r * 4, n0 + g), lane);
      b1[r] = ops.load_shared_u32(base, element(kk * 8 + t + r * 4, n0 + 8 + g), lane);
    }
  }
};

// The element of the C tile that accumulator register r (0..3) of mma tile
// (mi, ni) of a warp holds (the m16n8 C fragment: rows g and g + 8,
// columns 2t and 2t + 1).
PYCNN_HOST_DEVICE __forceinline__ int acc_row(int warp_m0, int mi, int r, int lane) {
  return warp_m0 + mi * 16 + (lane >> 2) + (r >> 1) * 8;
}
PYCNN_HOST_DEVICE __forceinline__ int acc_col(int warp_n0, int ni, int r, int lane) {
  return warp_n0 + ni * 8 + (lane & 3) * 2 + (r & 1);
}

// One stage of the warp's work: for each of the stage's K steps, load the
// warp's A and B fragments from shared memory and issue MI x NI mma.
template <class Cfg, class ATile, class BTile, class Ops>
PYCNN_HOST_DEVICE __forceinline__ void warp_mma_stage(const Ops& ops, const uint8_t* a_tile,
                                                      const uint8_t* b_tile, int warp_m0,
                                                      int warp_n0, int lane,
                                                      float (&acc)[Cfg::MI][Cfg::NI][4]) {
#pragma unroll
  for (int kk = 0; kk < Cfg::kKSteps; ++kk) {
    uint32_t a[Cfg::MI][4], b[Cfg::NI][2];
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi) ATile::load_a(ops, a_tile, a[mi], warp_m0 + mi * 16, kk, lane);
#pragma unroll
    for (int p = 0; p < Cfg::NI / 2; ++p)
      BTile::load_b_pair(ops, b_tile, b[2 * p], b[2 * p + 1], warp_n0 + p * 16, kk, lane);
    if constexpr (Cfg::kind == MmaKind::kTF32) {
#pragma unroll
      for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
        for (int r = 0; r < 4; ++r) a[mi][r] = to_tf32(a[mi][r]);
#pragma unroll
      for (int ni = 0; ni < Cfg::NI; ++ni)
#pragma unroll
        for (int r = 0; r < 2; ++r) b[ni][r] = to_tf32(b[ni][r]);
    }
#pragma unroll
    for (int mi = 0; mi < Cfg::MI; ++mi)
#pragma unroll
      for (int ni = 0; ni < Cfg::NI; ++ni) ops.template mma<Cfg::kind>(acc[mi][ni], a[mi], b[ni]);
  }
}

}  // namespace gpu
}  // namespace pycnn
