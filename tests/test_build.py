"""Build facts: the package imports, reports its backends, and registers a
kernel with the dispatcher for every op on every backend it was built for."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as TF

import pycnn
from checks import compare_with_torch

OPS = ["conv2d", "conv2d_relu", "conv2d_input_backward", "conv2d_weight_backward", "conv2d_bias_backward",
       "max_pool2d_with_indices", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
       "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
       "adaptive_max_pool2d_backward"]


def registered_ops():
    return sorted(name.split("::", 1)[1] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("pycnn::"))


def test_import_in_a_fresh_process():
    """import pycnn on its own, with PYCNN_CPU_ISA capping the ISA."""
    code = "import pycnn; print(pycnn.__version__, pycnn.cpu_isa())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYCNN_CPU_ISA": "generic"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [pycnn.__version__, "generic"]
    assert pycnn._extension._C.torch_version == torch.__version__.split("+")[0]


def test_backends():
    assert isinstance(pycnn.cuda_compiled(), bool)
    assert pycnn.backends() == (["cpu", "cuda"] if pycnn.cuda_compiled() else ["cpu"])


def test_the_op_namespace_is_exactly_the_documented_ops():
    assert registered_ops() == sorted(OPS)


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_kernels_for_its_backends(op):
    name = f"pycnn::{op}"
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CPU")
    # The fake kernel (meta tensors, torch.compile) and the autograd formula.
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "Meta")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "Autograd")
    assert torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA") == pycnn.cuda_compiled(), (
        f"{name}: CUDA kernel registered = "
        f"{torch._C._dispatch_has_kernel_for_dispatch_key(name, 'CUDA')}, "
        f"cuda_compiled() = {pycnn.cuda_compiled()}")


def test_ops_are_pt2_compliant():
    for op in OPS:
        packet = getattr(torch.ops.pycnn, op)
        assert torch.Tag.pt2_compliant_tag in packet.default.tags, op


def test_cpu_isa_reports_a_known_level():
    assert pycnn.cpu_isa() in ("generic", "avx2", "avx512")


def test_set_cpu_isa_rejects_unsupported_levels():
    from conftest import ISA_ORDER, SUPPORTED_ISAS
    unsupported = ISA_ORDER[len(SUPPORTED_ISAS):]
    saved = pycnn.cpu_isa()
    for isa in unsupported:
        with pytest.raises(ValueError, match=f"does not support isa='{isa}'"):
            pycnn.set_cpu_isa(isa)
        assert pycnn.cpu_isa() == saved


@pytest.mark.parametrize("threads", [1, 3, 7])
def test_results_do_not_depend_on_the_thread_count(threads):
    """Uneven splits of the work between threads (3 and 7 on any core count)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for dtype in (torch.float64, torch.float32):
            x = torch.randn(3, 17, 13, 11, dtype=torch.float64, requires_grad=True)
            w = torch.randn(33, 17, 3, 3, dtype=torch.float64, requires_grad=True)
            b = torch.randn(33, dtype=torch.float64, requires_grad=True)
            compare_with_torch(
                lambda input, weight, bias: pycnn.functional.conv2d(input, weight, bias, padding=1),
                lambda input, weight, bias: TF.conv2d(input, weight, bias, padding=1),
                dict(input=x, weight=w, bias=b), dtype, what=f"conv2d threads={threads}")
            wd = torch.randn(17, 1, 5, 5, dtype=torch.float64, requires_grad=True)
            compare_with_torch(
                lambda input, weight: pycnn.functional.conv2d(input, weight, groups=17, stride=2),
                lambda input, weight: TF.conv2d(input, weight, groups=17, stride=2),
                dict(input=x, weight=wd), dtype, what=f"depthwise threads={threads}")
            compare_with_torch(
                lambda input: pycnn.functional.max_pool2d(input, 3, 2, 1, return_indices=True),
                lambda input: TF.max_pool2d(input, 3, 2, 1, return_indices=True),
                dict(input=x), dtype, linear=False, what=f"max_pool2d threads={threads}")
            compare_with_torch(
                lambda input: pycnn.functional.avg_pool2d(input, 3, 2, 1),
                lambda input: TF.avg_pool2d(input, 3, 2, 1), dict(input=x), dtype,
                what=f"avg_pool2d threads={threads}")
            compare_with_torch(
                lambda input: pycnn.functional.adaptive_avg_pool2d(input, (4, 3)),
                lambda input: TF.adaptive_avg_pool2d(input, (4, 3)), dict(input=x), dtype,
                what=f"adaptive_avg_pool2d threads={threads}")
            compare_with_torch(
                lambda input: pycnn.functional.adaptive_max_pool2d(input, (4, 3), True),
                lambda input: TF.adaptive_max_pool2d(input, (4, 3), True), dict(input=x), dtype,
                linear=False, what=f"adaptive_max_pool2d threads={threads}")
    finally:
        torch.set_num_threads(saved)
