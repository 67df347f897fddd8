"""The C++ build (CMakeLists.txt against libtorch) and its dispatcher test
(tests/cpp/test_ops.cpp, run by ctest).

Compiling every source again against libtorch takes 5-8 minutes on two cores,
more than the rest of the suite together, so this test runs only when asked:
PYCNN_CPP_TEST=1 pytest tests/test_cmake.py, or `make cpp-test`, which runs
the same three commands."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(command, cwd):
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, (f"{' '.join(map(str, command))} failed ({out.returncode}):\n"
                                 f"{out.stdout[-5000:]}\n{out.stderr[-5000:]}")
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("PYCNN_CPP_TEST") != "1",
                    reason="the libtorch C++ build takes minutes: set PYCNN_CPP_TEST=1 or run "
                           "`make cpp-test`")
def test_cmake_build_and_ctest():
    import torch.utils

    build = ROOT / "build" / "cmake"
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}", f"-DPYTHON={sys.executable}"]
    if shutil.which("ninja") and not (build / "CMakeCache.txt").exists():
        configure += ["-G", "Ninja"]
    run(configure, ROOT)
    run(["cmake", "--build", str(build), "-j", "2"], ROOT)
    out = run(["ctest", "--output-on-failure"], build)
    assert "100% tests passed" in out, out
