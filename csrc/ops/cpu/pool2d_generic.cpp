// The pooling kernels for any CPU: one lane, plain scalar code (the compiler
// may still vectorise it for the baseline target).
#include <cstdint>

#include "../../shape.h"
#include "pool2d_simd.h"

namespace pycnn {
namespace {


}  // namespace
}  // namespace pycnn

#include "pool2d_simd_kernels.h"

namespace pycnn {

PYCNN_CONSTINIT const PoolKernels<float> pool_kernels_generic_f32 = make_pool_kernels<ScalarLanes<float>>();
PYCNN_CONSTINIT const PoolKernels<double> pool_kernels_generic_f64 =
    make_pool_kernels<ScalarLanes<double>>();

}  // namespace pycnn
