"""Loads pycnn's compiled library, refusing one built for another torch."""
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


def set_poison_outputs(enabled: bool) -> None:
    """Test mode: kernels' outputs start as NaN (indices as -1), so that an
    element a kernel fails to write cannot pass a comparison by luck."""
    _C.set_poison_outputs(bool(enabled))
