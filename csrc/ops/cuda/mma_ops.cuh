// The few Ampere/Hopper instructions the tensor-core and pipelined kernels
// use, behind small host-device types, so that the kernels' block code is
// written once and run either on the GPU or, in tests/cuda_emulation, by a
// host model of these instructions:
//
//   DeviceCopier   cp.async: a 16-byte (or 4- or 8-byte) global -> shared
//                  copy that lands asynchronously; an invalid source fills
//                  the destination with zeros (src-size 0, nothing is read);
//   DeviceWarpOps  ldmatrix (.x4, and .trans for 16-bit elements), a 32-bit
//                  shared load, and mma.sync m16n8k16 (f16, bf16 -> f32) and
//                  m16n8k8 (tf32 -> f32);
//   DeviceBlockExec  one thread's view of a block: run per-thread and
//                  per-warp code on its own registers, commit / wait for
//                  cp.async groups, barrier.
//
// mma.sync and ldmatrix assemble for plain sm_90 (and sm_80): no
// architecture-specific target is needed (wgmma would need sm_90a).
#pragma once

#include <cstdint>

#include "../../shape.h"

#if !defined(__CUDA_ARCH__)
#include <cstdio>
#include <cstdlib>
#endif

namespace pycnn {
namespace gpu {

// Which tensor-core instruction a kernel uses.
enum class MmaKind { kF16, kBF16, kTF32 };

#if !defined(__CUDA_ARCH__)
// The device types are host-callable only so that host code can name them;
// reaching one on the host is a bug.
[[noreturn]] inline void device_only(const char* what) {
  std::fprintf(stderr, "pycnn: %s called on the host\n", what);
  std::abort();
}
#endif

PYCNN_HOST_DEVICE __forceinline__ uint32_t shared_address(const void* p) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#else
  device_only("shared_address");
#endif
}

// Issues cp.async copies; `thread` is ignored on the device (the host model
// uses it to attribute writes).
struct DeviceCopier {
  template <int kBytes>
  PYCNN_HOST_DEVICE __forceinline__ void copy(int /*thread*/, uint8_t* dst, const void* src,
                                              bool valid) const {
#if defined(__CUDA_ARCH__)
    const uint32_t d = shared_address(dst);
    const int n = valid ? kBytes : 0;
    if constexpr (kBytes == 16) {
      // .cg: through L2 only; tiles are re-read from L2, not L1.
      asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(n));
    } else if constexpr (kBytes == 8) {
      asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(d), "l"(src), "r"(n));
    } else {
      static_assert(kBytes == 4, "cp.async copies 4, 8 or 16 bytes");
      asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(n));
    }
#else
    (void)dst, (void)src, (void)valid;
    device_only("cp.async");
#endif
  }
};

struct DeviceWarpOps {
  // ldmatrix .x4: lane l supplies the address of row l % 8 of matrix l / 8
  // (row_offset(l), bytes from base); r[j] receives, from matrix j, row
  // lane / 4, 16-bit elements 2 (lane % 4) and 2 (lane % 4) + 1 (with .trans:
  // column lane / 4, rows 2 (lane % 4) and 2 (lane % 4) + 1).
  template <bool kTrans, class RowOffset>
  PYCNN_HOST_DEVICE __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const uint8_t* base,
                                                     int lane, RowOffset row_offset) const {
#if defined(__CUDA_ARCH__)
    const uint32_t a = shared_address(base + row_offset(lane));
    if constexpr (kTrans) {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(a));
    } else {
      asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                   : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                   : "r"(a));
    }
#else
    (void)r, (void)base, (void)lane, (void)row_offset;
    device_only("ldmatrix");
#endif
  }

  PYCNN_HOST_DEVICE __forceinline__ uint32_t load_shared_u32(const uint8_t* base, int offset,
                                                            int /*lane*/) const {
#if defined(__CUDA_ARCH__)
    return *reinterpret_cast<const uint32_t*>(base + offset);
#else
    (void)base, (void)offset;
    device_only("shared load");
#endif
  }

  // Four consecutive floats (16-byte aligned), for the FFMA kernel.
  PYCNN_HOST_DEVICE __forceinline__ void load_shared_f4(float* v, const uint8_t* base, int offset,
                                                        int /*lane*/) const {
#if defined(__CUDA_ARCH__)
    const float4 q = *reinterpret_cast<const float4*>(base + offset);
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
#else
    (void)v, (void)base, (void)offset;
    device_only("shared load");
#endif
  }

  // d += a * b for one m16n8 tile: m16n8k16 for f16/bf16, m16n8k8 for tf32.
  template <MmaKind kKind>
  PYCNN_HOST_DEVICE __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4],
                                             const uint32_t (&b)[2]) const {
#if defined(__CUDA_ARCH__)
    if constexpr (kKind == MmaKind::kF16) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else if constexpr (kKind == MmaKind::kBF16) {
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    } else {
      asm volatile(
          "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
          "{%8,%9}, {%0,%1,%2,%3};\n"
          : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
          : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
    }
#else
    (void)d, (void)a, (void)b;
    device_only("mma.sync");
#endif
  }
};

// float -> tf32 (round to nearest, ties away from zero), as the bits of a
// float whose 13 low mantissa bits are zero.  The tensor cores would
// otherwise truncate.
PYCNN_HOST_DEVICE __forceinline__ uint32_t to_tf32(uint32_t float_bits) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(__uint_as_float(float_bits)));
  return r;
#else
  // Same rounding on the host (for the emulator); NaN and inf keep their class.
  if ((float_bits & 0x7f800000u) == 0x7f800000u) {
    return (float_bits & 0x007fffffu) ? (float_bits | 0x00400000u) & 0xffffe000u
                                      : float_bits;
  }
  return (float_bits + 0x1000u) & 0xffffe000u;
#endif
}

// One thread's view of a thread block for the pipelined kernels' block code
// (igemm_tc.cuh, igemm_simt.cuh): per-thread work runs on this thread's state.
template <class ThreadState>
struct DeviceBlockExec {
  ThreadState state;
  int tid;

  template <class F>
  PYCNN_HOST_DEVICE __forceinline__ void threads(F&& f) {
    DeviceCopier copier;
    f(tid, state, copier);
  }
  template <class F>
  PYCNN_HOST_DEVICE __forceinline__ void warps(F&& f) {
    DeviceWarpOps ops;
    f(tid / 32, tid % 32, state, ops);
  }
  PYCNN_HOST_DEVICE __forceinline__ void commit() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.commit_group;\n" ::);
#endif
  }
  template <int kPending>
  PYCNN_HOST_DEVICE __forceinline__ void wait() {
#if defined(__CUDA_ARCH__)
    asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
#endif
  }
  PYCNN_HOST_DEVICE __forceinline__ void sync() {
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
  }
};

}  // namespace gpu
}  // namespace pycnn
