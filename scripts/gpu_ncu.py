"""The workload scripts/gpu_check.sh profiles under Nsight Compute (ncu):
one forward of VGG-16 conv3_2 (64x256x56x56, 256 3x3), channels_last, in
float16 with the 128x128 tile of 8 and of 4 warps, and in TF32, so that ncu's
sections (throughput, warp stalls, shared-memory bank conflicts) compare them.

    ncu --clock-control none --kernel-name regex:igemm python scripts/gpu_ncu.py
"""
import torch

import pycnn  # noqa: F401  (loads the kernels)
from pycnn import _extension

ops = torch.ops.pycnn


def main():
    torch.manual_seed(0)
    for dtype, tf32, tiles in ((torch.float16, None, ("128x128", "128x128w4")),
                               (torch.float32, True, ("128x128",))):
        x = torch.randn(64, 256, 56, 56, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        with _extension.tf32(tf32):
            for tile in tiles:
                with _extension.cuda_kernels("auto", tile):
                    ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
