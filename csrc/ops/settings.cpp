#include "settings.h"

#include <ATen/Context.h>

#include <atomic>

namespace pycnn {
namespace {
std::atomic<int> tf32{kTf32FollowTorch};
std::atomic<int> kernels{kCudaKernelsAuto};
std::atomic<int> conv_tile{0};
std::atomic<int> cpu_kernels{kCpuConvKernelsAuto};
}  // namespace

void set_tf32_mode(int mode) { tf32.store(mode); }
int tf32_mode() { return tf32.load(); }

bool tf32_enabled() {
  const int mode = tf32.load();
  if (mode != kTf32FollowTorch) return mode == kTf32On;
  // The convolution setting (torch.backends.cudnn.allow_tf32, or
  // torch.backends.cudnn.conv.fp32_precision == "tf32").
  return at::globalContext().allowTF32CuDNN(at::Float32Op::CONV);
}

void set_cuda_kernels(int k) { kernels.store(k); }
int cuda_kernels() { return kernels.load(); }

void set_cuda_conv_tile(int tile) { conv_tile.store(tile); }
int cuda_conv_tile() { return conv_tile.load(); }

void set_cpu_conv_kernels(int k) { cpu_kernels.store(k); }
int cpu_conv_kernels() { return cpu_kernels.load(); }

namespace {
std::atomic<long long> max_pool_fallbacks{0};
}  // namespace
void count_max_pool_reference_fallback() { max_pool_fallbacks.fetch_add(1); }
long long max_pool_reference_fallbacks() { return max_pool_fallbacks.load(); }

namespace {
std::atomic<long long> pointwise_passes{0};
}  // namespace
void count_pointwise_conv_pass() { pointwise_passes.fetch_add(1); }
long long pointwise_conv_passes() { return pointwise_passes.load(); }

}  // namespace pycnn
