"""Where pycnn's CUDA convolution time goes, per layer and pass: each tile
shape forced in turn, torch (cuDNN) beside it, and the profiler's split of
the automatic choice's time among its kernels (packing, GEMM, split-K sum).

One row per layer, family and pass:
  torch ms | auto ms | each tile forced (TILES) | gemm | kernels of auto (share of GPU time)
("gemm": the implicit GEMM where Winograd would run, for the A/B.)

Then the ResNet-50 AMP training step (the benchmark's case), pycnn's model
and torch's side by side: GPU time per step by kernel, largest first.

    python scripts/gpu_profile.py [--budget-s 60]
"""
import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as TF

import pycnn  # noqa: F401  (loads the kernels)
from pycnn import _extension

ops = torch.ops.pycnn
aten = torch.ops.aten

# name, N, C, H, W, K, R, stride, padding: layers of the benchmark's default set.
LAYERS = [
    ("LeNet-5 C1", 1024, 1, 32, 32, 6, 5, 1, 0),
    ("AlexNet conv2", 128, 64, 27, 27, 192, 5, 1, 2),
    ("VGG-16 conv1_2", 32, 64, 224, 224, 64, 3, 1, 1),
    ("VGG-16 conv5", 64, 512, 14, 14, 512, 3, 1, 1),
    ("VGG-16 conv3_2", 16, 256, 56, 56, 256, 3, 1, 1),
    ("ResNet stem", 64, 3, 224, 224, 64, 7, 2, 3),
    ("ResNet layer1", 64, 64, 56, 56, 64, 3, 1, 1),
    ("ResNet layer3", 64, 256, 14, 14, 256, 3, 1, 1),
    ("ResNet-50 1x1", 64, 256, 56, 56, 64, 1, 1, 0),
]
FAMILIES = [("f32 nchw", torch.float32, False, torch.contiguous_format),
            ("f16 cl", torch.float16, None, torch.channels_last)]
TILES = ["auto", "128x128", "128x64", "64x64"]


def median_ms(fn, reps=7):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_shares(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    totals = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name.split("<")[0].split("(")[0].replace("void ", "").split("::")[-1]
            totals[name] = totals.get(name, 0.0) + e.time_range.elapsed_us()
    whole = sum(totals.values()) or 1.0
    return " ".join(f"{k}:{100 * v / whole:.0f}%" for k, v in sorted(totals.items(), key=lambda kv: -kv[1])[:3])


def kernel_table(fn, steps=3):
    """{kernel name: GPU ms per call of fn} over `steps` calls."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            fn()
        torch.cuda.synchronize()
    totals = {}
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            name = e.name.split("(")[0].replace("void ", "")[:70]
            totals[name] = totals.get(name, 0.0) + e.time_range.elapsed_us() / 1000 / steps
    return totals


def step_profile(top=18):
    """The ResNet-50 AMP step's GPU time by kernel, pycnn and torch."""
    from pycnn.bench import cases, runner
    case = next(c for c in cases.default_cases("cuda") if c.name == "ResNet-50 AMP train step")
    settings = runner.Settings(device="cuda", check=False)
    steps, _, _ = runner._train_steps(case, "nchw", settings)
    lines = []
    for side in ("pycnn", "torch"):
        step = steps[side]
        for _ in range(3):
            step()
        table = kernel_table(step)
        total = sum(table.values())
        lines.append(f"-- {side}: {total:.2f} ms of kernels per step")
        for name, ms in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            lines.append(f"   {ms:8.3f} ms {100 * ms / total:5.1f}%  {name}")
    return lines


def fused_relu_steps():
    """The VGG-16 and ResNet-50 AMP train steps (the benchmark's cases) with
    pycnn's layers, before and after pycnn.convert(..., fuse_relu=True), and
    torch's: ms per step (ResNet's ReLUs follow batch norm, so nothing fuses
    there: its row checks that fusing changes nothing it should not)."""
    import pycnn.convert
    from pycnn.bench import cases, runner
    lines = []
    for name in ("VGG-16 train step", "ResNet-50 AMP train step"):
        case = next(c for c in cases.default_cases("cuda") if c.name == name)
        steps, _, _ = runner._train_steps(case, "nchw", runner.Settings(device="cuda", check=False))
        plain, theirs = median_ms(steps["pycnn"]), median_ms(steps["torch"])
        pycnn.convert(steps["pycnn"].model, fuse_relu=True)
        fused_layers = sum(type(m).__name__ == "Conv2dReLU" for m in steps["pycnn"].model.modules())
        fused = median_ms(steps["pycnn"])
        lines.append(f"{name:26} torch {theirs:8.2f}  pycnn {plain:8.2f}  fused {fused:8.2f} ms "
                     f"({fused_layers} Conv2dReLU)")
        del steps
        torch.cuda.empty_cache()
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=60.0)
    args = parser.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    start = time.perf_counter()
    rows = []
    for family, dtype, tf32, memory_format in FAMILIES:
        for name, n, c, h, w, k, r, stride, padding in LAYERS:
            if time.perf_counter() - start > args.budget_s:
                rows.append(f"{name:16} {family:8} (out of time)")
                continue
            x = torch.randn(n, c, h, w, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
            wt = torch.randn(k, c, r, r, device="cuda", dtype=dtype).contiguous(memory_format=memory_format)
            s, p, d = [stride] * 2, [padding] * 2, [1, 1]
            g = torch.randn_like(TF.conv2d(x, wt, None, s, p, d))
            passes = {
                "fwd": (lambda: ops.conv2d(x, wt, None, s, p, d, 1), lambda: TF.conv2d(x, wt, None, s, p, d)),
                "dgrad": (lambda: ops.conv2d_input_backward(g, wt, list(x.shape), s, p, d, 1),
                          lambda: aten.convolution_backward(g, x, wt, None, s, p, d, False, [0, 0], 1,
                                                            [True, False, False])),
                "wgrad": (lambda: ops.conv2d_weight_backward(g, x, list(wt.shape), s, p, d, 1),
                          lambda: aten.convolution_backward(g, x, wt, None, s, p, d, False, [0, 0], 1,
                                                            [False, True, False])),
            }
            with _extension.tf32(tf32):
                for pass_, (ours, theirs) in passes.items():
                    cells = [median_ms(theirs)]
                    for tile in TILES:
                        with _extension.cuda_kernels("auto", tile):
                            cells.append(median_ms(ours))
                    with _extension.cuda_kernels("gemm"):  # Winograd's A/B
                        cells.append(median_ms(ours))
                    shares = kernel_shares(ours)
                    rows.append(f"{name:16} {family:8} {pass_:5} {cells[0]:8.3f} " + " ".join(f"{v:9.3f}" for v in cells[1:])
                                + f"  {shares}")
            del x, wt, g
            torch.cuda.empty_cache()
    print(f"\n==== pycnn conv kernels by tile on {torch.cuda.get_device_name()} (ms, TF32 off; "
          f"{time.perf_counter() - start:.0f} s)")
    print(f"{'layer':16} {'family':8} {'pass':5} {'torch':>8} "
          + " ".join(f"{tile:>9}" for tile in TILES) + f" {'gemm':>9}  kernels of auto")
    print("\n".join(rows))
    try:
        lines = step_profile()
    except Exception as error:  # the tile table above is the main product
        lines = [f"step profile failed: {type(error).__name__}: {error}"]
    print(f"\n==== ResNet-50 AMP train step (batch 64, channels_last): GPU time by kernel")
    print("\n".join(lines))
    try:
        lines = fused_relu_steps()
    except Exception as error:
        lines = [f"fused-ReLU steps failed: {type(error).__name__}: {error}"]
    print(f"\n==== train steps with Conv2d + ReLU fused (pycnn.convert(model, fuse_relu=True))")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
