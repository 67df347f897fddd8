import os
import zlib

# libgomp's worker threads spin while they wait for work by default; when
# the cores are shared with other processes every small parallel_for then
# costs a scheduler time slice (tens of ms instead of microseconds).  Passive
# waiting changes no result.  It must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# torch.utils.cpp_extension reads CUDA_HOME once, when first imported (by
# whichever test comes first); without it torch guesses /usr/local and the
# CUDA emulation tests cannot link cudart.  setup.py applies the same default.
if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import pytest  # noqa: E402
import torch  # noqa: E402

import pycnn  # noqa: E402
from pycnn import _extension  # noqa: E402

try:
    from hypothesis import settings

    settings.register_profile("pycnn", max_examples=40, deadline=None, derandomize=False,
                              print_blob=True)
    settings.load_profile("pycnn")
except ImportError:  # hypothesis is a test dependency; test_randomised.py skips without it
    pass

ISA_ORDER = ["generic", "avx2", "avx512"]


def supported_isas():
    """The instruction sets this CPU can run, lowest first."""
    saved = pycnn.cpu_isa()
    try:
        # Uncapping to the highest level the CPU accepts tells what it supports.
        found = []
        for isa in ISA_ORDER:
            try:
                pycnn.set_cpu_isa(isa)
                found.append(isa)
            except ValueError:
                break
        return found
    finally:
        pycnn.set_cpu_isa(saved)


SUPPORTED_ISAS = supported_isas()


@pytest.fixture(autouse=True, scope="session")
def poison_outputs():
    """Every kernel output starts as NaN (indices -1): an element a kernel
    fails to write shows up as a mismatch instead of passing by luck."""
    _extension.set_poison_outputs(True)
    yield
    _extension.set_poison_outputs(False)


@pytest.fixture(autouse=True)
def seeded(request):
    """Fresh random inputs per test, reproducible from the test's name."""
    torch.manual_seed(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=SUPPORTED_ISAS)
def cpu_isa(request):
    """Runs the test with the CPU kernels capped at each supported ISA."""
    saved = pycnn.cpu_isa()
    pycnn.set_cpu_isa(request.param)
    assert pycnn.cpu_isa() == request.param
    yield request.param
    pycnn.set_cpu_isa(saved)


def pytest_configure(config):
    # torch's own conv2d (the reference) warns that it pads a copy for an even
    # 'same' kernel; that is torch's business, not a finding of these tests.
    config.addinivalue_line(
        "filterwarnings", "ignore:Using padding='same' with even kernel lengths:UserWarning")
