// conv2d's fast kernels for float16 on the tensor cores (mma.sync m16n8k16): one translation unit per
// kernel family, so that the families compile in parallel.
#include "conv2d_cuda.h"
#include "conv2d_fast_launch.cuh"

namespace pycnn {
namespace gpu {

using Kernelsf16 = TcKernels<MmaKind::kF16, c10::Half>;
PYCNN_DEFINE_FAST_CONV(f16, Kernelsf16)

}  // namespace gpu
}  // namespace pycnn
