// The ceiling of mma.sync on this GPU: how many TFLOP/s the tensor cores
// give through mma.sync (the instruction pycnn's tensor-core kernels use)
// when nothing else runs, by warps per SM and independent accumulators per
// warp.  scripts/gpu_check.sh builds and runs it (GPU_CHECK_MMA_PEAK=1):
//
//   nvcc -O3 -gencode=arch=compute_90a,code=sm_90a -o mma_sync_peak scripts/mma_sync_peak.cu
//   ./mma_sync_peak
//
// Each warp runs `kIters` rounds of `chains` independent m16n8k16 (f16 in,
// f32 accumulate) or m16n8k8 (TF32) mma on registers, no memory traffic;
// the results are summed into one store so that nothing is optimised away.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#define CHECK(call)                                                                     \
  do {                                                                                  \
    cudaError_t e = (call);                                                             \
    if (e != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e));   \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

constexpr int kIters = 4096;

template <int kChains, bool kTf32>
__global__ void mma_loop(float* out, uint32_t seed) {
  float acc[kChains][4];
#pragma unroll
  for (int c = 0; c < kChains; ++c)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[c][r] = 0.f;
  // Finite operands near 1 (zeros would run faster than real data): two
  // float16 values per register, or one float for TF32.
  const uint32_t jitter = (seed + threadIdx.x) & 0xff;
  const uint32_t one = kTf32 ? 0x3f800000u ^ (jitter << 13) : 0x3c003c00u ^ (jitter * 0x00010001u);
  const uint32_t a0 = one, a1 = one ^ 0x10u, a2 = one ^ 0x20u, a3 = one ^ 0x30u;
  const uint32_t b0 = one ^ 0x40u, b1 = one ^ 0x50u;
  for (int i = 0; i < kIters; ++i) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) {
      if constexpr (kTf32) {
        asm volatile(
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(acc[c][0]), "+f"(acc[c][1]), "+f"(acc[c][2]), "+f"(acc[c][3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
            "{%8,%9}, {%0,%1,%2,%3};\n"
            : "+f"(acc[c][0]), "+f"(acc[c][1]), "+f"(acc[c][2]), "+f"(acc[c][3])
            : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
      }
    }
  }
  float sum = 0.f;
#pragma unroll
  for (int c = 0; c < kChains; ++c) sum += acc[c][0] + acc[c][1] + acc[c][2] + acc[c][3];
  if (sum == 1.2345f) out[threadIdx.x] = sum;  // never true; keeps the loop alive
}

template <int kChains, bool kTf32>
void measure(int sms, int warps_per_block, int blocks_per_sm, float* out) {
  const int blocks = sms * blocks_per_sm;
  const dim3 grid(blocks), block(32 * warps_per_block);
  mma_loop<kChains, kTf32><<<grid, block>>>(out, 1);  // warm-up
  CHECK(cudaGetLastError());
  CHECK(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  float best = 1e30f;
  for (int rep = 0; rep < 5; ++rep) {
    CHECK(cudaEventRecord(start));
    mma_loop<kChains, kTf32><<<grid, block>>>(out, rep + 2);
    CHECK(cudaEventRecord(stop));
    CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    if (ms < best) best = ms;
  }
  const double flops_per_mma = kTf32 ? 2.0 * 16 * 8 * 8 : 2.0 * 16 * 8 * 16;
  const double flops = double(blocks) * warps_per_block * kIters * kChains * flops_per_mma;
  std::printf("%-5s warps/SM %2d  chains %2d  %7.1f TFLOP/s\n", kTf32 ? "tf32" : "f16",
              warps_per_block * blocks_per_sm, kChains, flops / (best * 1e-3) / 1e12);
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
}

template <bool kTf32>
void sweep(int sms, float* out) {
  for (int warps : {4, 8, 16, 32}) {
    const int per_block = warps < 8 ? warps : 8, blocks = warps / per_block;
    measure<4, kTf32>(sms, per_block, blocks, out);
    measure<8, kTf32>(sms, per_block, blocks, out);
    measure<16, kTf32>(sms, per_block, blocks, out);
  }
}

int main() {
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("mma.sync ceiling on %s (%d SMs)\n", prop.name, prop.multiProcessorCount);
  float* out;
  CHECK(cudaMalloc(&out, 1024 * sizeof(float)));
  sweep<false>(prop.multiProcessorCount, out);
  sweep<true>(prop.multiProcessorCount, out);
  CHECK(cudaFree(out));
  return 0;
}
