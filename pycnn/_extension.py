"""Loads pycnn's compiled library, refusing one built for another torch."""
import contextlib

import torch

REBUILD = "pip install --no-build-isolation -e .   (or: make build)"

try:
    from . import _C
except ImportError as error:  # missing, or built against another libtorch (undefined symbols)
    raise ImportError(
        f"pycnn's compiled library (pycnn._C) could not be loaded: {error}\n"
        f"It must be built against the installed torch {torch.__version__}; "
        f"rebuild it from the source tree with:\n    {REBUILD}") from error

_installed = torch.__version__.split("+")[0]
if _C.torch_version != _installed:
    raise ImportError(
        f"pycnn was compiled against torch {_C.torch_version} but torch {_installed} is "
        f"installed; rebuild it from the source tree with:\n    {REBUILD}")


def cuda_compiled() -> bool:
    """Whether this build of pycnn contains its CUDA kernels."""
    return bool(_C.cuda_compiled)


def backends() -> list:
    """The devices pycnn's kernels were compiled for, e.g. ['cpu', 'cuda']."""
    return ["cpu", "cuda"] if cuda_compiled() else ["cpu"]


def cpu_isa() -> str:
    """The instruction set pycnn's CPU kernels use here: 'avx512', 'avx2' or 'generic'."""
    return _C.cpu_isa()


def set_cpu_isa(isa: str) -> None:
    """Caps the CPU kernels at an instruction set ('generic', 'avx2', 'avx512'),
    for example to test the paths a CPU without AVX-512 takes."""
    _C.set_cpu_isa(isa)


def output_cache_info() -> dict:
    """The block cache of large CPU outputs (4 MiB or more): the bytes freed
    outputs hold now and the most it keeps (PYCNN_OUTPUT_CACHE_MB, default
    1024; 0 turns the cache off).  A freed output's memory stays mapped there
    for the next output of its size, which then costs no page faults."""
    cached, limit = _C.output_cache_info()
    return {"cached_bytes": cached, "limit_bytes": limit}


def release_output_cache() -> None:
    """Returns the memory of every cached output block to the system, as
    torch.cuda.empty_cache does for CUDA's."""
    _C.release_output_cache()


def max_pool_reference_fallbacks() -> int:
    """Test hook: how many max-pool gradients of dense CPU tensors fell back
    to the reference loops because an index named no tap of its window.
    Indices from a forward never should; a fallback gives the same numbers,
    only slower, so tests watch this count."""
    return _C.max_pool_reference_fallbacks()


def pointwise_conv_passes() -> int:
    """Test hook: how many CPU conv2d passes (forward or grad_input) ran the
    NCHW 1x1 product (csrc/ops/cpu/conv2d_pointwise.h) rather than the GEMM
    engine."""
    return _C.pointwise_conv_passes()


def set_poison_outputs(enabled: bool) -> None:
    """Test mode: kernels' outputs start as NaN (indices as -1), so that an
    element a kernel fails to write cannot pass a comparison by luck."""
    _C.set_poison_outputs(bool(enabled))


def set_tf32(enabled) -> None:
    """Whether float32 convolutions on CUDA may use TF32 tensor cores.

    None (the default): follow torch.backends.cudnn.allow_tf32, the switch
    that governs cuDNN's float32 convolutions (on by default in torch), so
    that pycnn and torch compare like for like.  True or False: pycnn's own
    choice, whatever torch's.  TF32 rounds the operands to a 10-bit mantissa
    (relative error near 1e-3); off, pycnn computes in true float32 (FFMA)."""
    _C.set_tf32(enabled)


def tf32_mode():
    """The TF32 setting: None (follow torch), True or False."""
    return _C.tf32_mode()


def tf32_enabled() -> bool:
    """Whether the next float32 CUDA convolution uses TF32: the setting, or
    torch's cuDNN setting when the setting is None."""
    return bool(_C.tf32_enabled())


@contextlib.contextmanager
def tf32(enabled):
    """Sets TF32 (None, True, False) for the duration of a with block."""
    saved = tf32_mode()
    set_tf32(enabled)
    try:
        yield
    finally:
        set_tf32(saved)


def set_cuda_kernels(name: str) -> None:
    """Test and benchmark hook: 'auto' (the fast CUDA kernels where they
    apply), 'reference' (the first, simple ones: one implicit GEMM, one
    thread per element) or 'gemm' (the fast kernels with the implicit GEMM
    where Winograd would run)."""
    _C.set_cuda_kernels(name)


def set_cpu_conv_kernels(name: str) -> None:
    """Test and benchmark hook: 'auto' (on the CPU, Winograd F(2x2, 3x3) for
    the 3x3 stride-1 convolutions it suits, and the pixels-on-lanes product
    for NCHW 1x1 convolutions of large planes) or 'gemm' (the GEMM kernels
    there instead)."""
    _C.set_cpu_conv_kernels(name)


@contextlib.contextmanager
def cpu_conv_kernels(kernels: str = "auto"):
    """Forces a CPU convolution kernel choice for the duration of a with block."""
    saved = _C.cpu_conv_kernels()
    set_cpu_conv_kernels(kernels)
    try:
        yield
    finally:
        set_cpu_conv_kernels(saved)


def set_cuda_conv_tile(name: str) -> None:
    """Test and benchmark hook: the fast kernels' tile ('auto', '128x128',
    '128x64', '64x64')."""
    _C.set_cuda_conv_tile(name)


@contextlib.contextmanager
def cuda_kernels(kernels: str = "auto", tile: str = "auto"):
    """Forces a CUDA kernel choice for the duration of a with block."""
    saved = (_C.cuda_kernels(), _C.cuda_conv_tile())
    set_cuda_kernels(kernels)
    set_cuda_conv_tile(tile)
    try:
        yield
    finally:
        set_cuda_kernels(saved[0])
        set_cuda_conv_tile(saved[1])
