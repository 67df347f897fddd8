"""Large CPU outputs ask for transparent huge pages (csrc/ops/common.cpp),
unless PYCNN_HUGE_PAGES=0: checked in the kernel's own view of the mapping
(/proc/self/smaps, VmFlags "hg" = MADV_HUGEPAGE)."""
import os
import pathlib
import subprocess
import sys

import pytest

SMAPS = pathlib.Path("/proc/self/smaps")
THP_MODE = pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_available():
    # The active mode is the bracketed one: "always [madvise] never".
    return SMAPS.exists() and THP_MODE.exists() and "[never]" not in THP_MODE.read_text()

PROBE = r"""
import torch, pycnn
from pycnn import functional as F
x = torch.randn(4, 64, 128, 128)             # 16 MiB in, 4 MiB out
small = F.max_pool2d(torch.randn(1, 1, 8, 8), 2)
out = F.max_pool2d(x, 2)                       # an output of 4 MiB (+ 8 MiB of indices)
def advised(t):
    address = t.data_ptr() + t.numel() * t.element_size() // 2
    block = None
    for line in open("/proc/self/smaps"):
        head = line.split()[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(v, 16) for v in head.split("-"))
            block = lo <= address < hi
        elif block and line.startswith("VmFlags:"):
            return " hg" in line
    raise AssertionError("address not mapped")
print(advised(out), advised(small))
"""


def probe(env):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split()


@pytest.mark.skipif(not thp_available(),
                    reason="needs Linux with transparent huge pages in madvise or always mode")
def test_large_outputs_ask_for_huge_pages_unless_disabled():
    # [large output advised, small output advised]
    assert probe({"PYCNN_HUGE_PAGES": "1"}) == ["True", "False"]
    assert probe({"PYCNN_HUGE_PAGES": "0"}) == ["False", "False"]
