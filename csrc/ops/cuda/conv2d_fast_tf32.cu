// conv2d's fast kernels for float32 as TF32 on the tensor cores (mma.sync m16n8k8): one translation unit per
// kernel family, so that the families compile in parallel.
#include "conv2d_cuda.h"
#include "conv2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {

using Kernelstf32 = TcKernels<MmaKind::kTF32, float>;
PYCNN_DEFINE_FAST_CONV(tf32, Kernelstf32)

}  // namespace gpu
}  // namespace pycnn
