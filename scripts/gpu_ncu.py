"""The workload scripts/gpu_check.sh profiles under Nsight Compute (ncu):
one forward of VGG-16 conv3_2 (64x256x56x56, 256 3x3), channels_last, in
float16 and in TF32 (the automatic tile, 128x128), and one of ResNet
layer1 (64x64x56x56, 64 3x3; too few channels for Winograd) in float32
with TF32 off, the FFMA kernel, for ncu's sections (throughput, warp
stalls, shared-memory bank conflicts) and the tensor and FMA pipes'
activity.

    ncu --clock-control none --kernel-name regex:igemm python scripts/gpu_ncu.py
"""
import torch

import pycnn  # noqa: F401  (loads the kernels)
from pycnn import _extension

ops = torch.ops.pycnn


def main():
    torch.manual_seed(0)
    for dtype, tf32 in ((torch.float16, None), (torch.float32, True)):
        x = torch.randn(64, 256, 56, 56, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        with _extension.tf32(tf32):
            ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
        torch.cuda.synchronize()
    x = torch.randn(64, 64, 56, 56, device="cuda").contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3, device="cuda").contiguous(memory_format=torch.channels_last)
    with _extension.tf32(False):
        ops.conv2d(x, w, None, [1, 1], [1, 1], [1, 1], 1)
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
