"""Large CPU outputs (csrc/ops/large_blocks.cpp): their blocks ask for
transparent huge pages unless PYCNN_HUGE_PAGES=0 (checked in the kernel's
own view of the mapping, /proc/self/smaps, VmFlags "hg" = MADV_HUGEPAGE),
and freed blocks wait in a bounded cache for the next output of their size."""
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


CACHE_PROBE = r"""
import torch, pycnn
from pycnn import functional as F
x = torch.randn(4, 64, 128, 128)
mib = 1 << 20
def cached():
    return pycnn.output_cache_info()["cached_bytes"] // mib
out = F.max_pool2d(x, 2, return_indices=True)[0]   # 4 MiB of values; 8 MiB of indices, dropped
held = [cached()]
del out                                  # both blocks go to the cache
held.append(cached())
again = F.max_pool2d(x, 2, return_indices=True)[0] # and come back from it
held.append(cached())
torch.testing.assert_close(again, torch.nn.functional.max_pool2d(x, 2))
again.resize_(4, 64, 64, 80)             # outputs stay resizable (a 5 MiB block)
again.view(-1)[-1] = 1.0
del again
held.append(cached())
pycnn.release_output_cache()
held.append(cached())
print(*held, pycnn.output_cache_info()["limit_bytes"] // mib)
"""


def cache_probe(env):
    out = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return [int(v) for v in out.stdout.split()]


def test_large_outputs_reuse_cached_blocks():
    # MiB cached: the dropped indices (8); plus the deleted output (12); the
    # same call again takes both blocks back and drops the indices (8); the
    # resize frees the 4 MiB block and the resized output's 6 MiB block is
    # deleted (18); after release (0); then the limit.
    assert cache_probe({"PYCNN_OUTPUT_CACHE_MB": "1024"}) == [8, 12, 8, 18, 0, 1024]


def test_output_cache_evicts_past_its_limit_and_turns_off():
    # 10 MiB of room: the least recently freed blocks go first (the 8 MiB
    # indices when the 4 MiB output arrives, and again when the resize frees
    # the 4 MiB block; the 6 MiB block then fits beside it).
    assert cache_probe({"PYCNN_OUTPUT_CACHE_MB": "10"}) == [8, 4, 8, 10, 0, 10]
    assert cache_probe({"PYCNN_OUTPUT_CACHE_MB": "0"}) == [0, 0, 0, 0, 0, 0]
