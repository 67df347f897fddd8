// conv2d's fast kernels for bfloat16 on the tensor cores (mma.sync m16n8k16): one translation unit per
// kernel family, so that the families compile in parallel.
#include "conv2d_cuda.h"
#include "conv2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {

using Kernelsbf16 = TcKernels<MmaKind::kBF16, c10::BFloat16>;
PYCNN_DEFINE_FAST_CONV(bf16, Kernelsbf16)

}  // namespace gpu
}  // namespace pycnn
