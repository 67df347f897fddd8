"""Builds pycnn's compiled operators (pycnn._C) with torch.utils.cpp_extension.

Environment:
  PYCNN_CUDA=0/1          force the CUDA kernels off or on (default: on when torch
                          has CUDA and a CUDA toolkit is found)
  TORCH_CUDA_ARCH_LIST    GPU targets; defaults to 9.0 (H100) when no GPU is visible
  CUDA_HOME               the toolkit; defaults to /usr/local/cuda when it exists
  PYCNN_PTXAS_VERBOSE=1   print ptxas's register/spill report for every kernel
  PYCNN_DEBUG=1           build without optimisation, with debug symbols
"""
import glob
import os
import sys

from setuptools import setup

# torch.utils.cpp_extension reads CUDA_HOME when it is imported; without it,
# torch guesses /usr/local and then cannot link cudart.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402

ROOT = os.path.dirname(os.path.abspath(__file__))


def notice(message):
    print(f"pycnn setup: {message}", file=sys.stderr)


def want_cuda():
    forced = os.environ.get("PYCNN_CUDA")
    have_toolkit = cpp_extension.CUDA_HOME is not None
    if forced == "0":
        return False
    if torch.version.cuda is None:
        if forced == "1":
            sys.exit("pycnn setup: PYCNN_CUDA=1 but the installed torch has no CUDA support")
        notice("torch has no CUDA support: building the CPU kernels only")
        return False
    if not have_toolkit:
        if forced == "1":
            sys.exit("pycnn setup: PYCNN_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME")
        notice("no CUDA toolkit found (set CUDA_HOME): building the CPU kernels only")
        return False
    return True


def sources(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))


def extension():
    debug = os.environ.get("PYCNN_DEBUG") == "1"
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx_flags = opt + ["-fopenmp", "-Wall", "-Wno-unknown-pragmas"]
    cpp_sources = [p for p in sources("csrc/**/*.cpp") if "/cuda/" not in p]
    include_dirs = [os.path.join(ROOT, "csrc")]
    if not want_cuda():
        return cpp_extension.CppExtension(
            "pycnn._C", cpp_sources, include_dirs=include_dirs,
            extra_compile_args={"cxx": cxx_flags}, extra_link_args=["-fopenmp"])
    if "TORCH_CUDA_ARCH_LIST" not in os.environ and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0"
        notice("no GPU visible: compiling CUDA kernels for TORCH_CUDA_ARCH_LIST=9.0 (H100)")
    nvcc_flags = opt + ["-lineinfo", "--expt-relaxed-constexpr", "-DPYCNN_WITH_CUDA"]
    if os.environ.get("PYCNN_PTXAS_VERBOSE") == "1":
        nvcc_flags += ["-Xptxas", "-v"]
    return cpp_extension.CUDAExtension(
        "pycnn._C", cpp_sources + sources("csrc/ops/cuda/*.cu"), include_dirs=include_dirs,
        define_macros=[("PYCNN_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags}, extra_link_args=["-fopenmp"])


class BuildExtension(cpp_extension.BuildExtension):
    """Keeps object files in ./build/temp for every kind of build (pip install,
    pip install -e, setup.py build_ext), so that ninja rebuilds only what changed."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = os.path.join(ROOT, "build", "temp")


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
