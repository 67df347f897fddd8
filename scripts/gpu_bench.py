"""Short benchmark of pycnn's CUDA kernels against torch's (cuDNN) at a few
ResNet, VGG and MobileNet layer shapes, forward and backward, float32 and
float16.

Both sides run in one process on the same tensors: warm-up calls first
(cuDNN's autotuner included), then the median of timed calls, each between
CUDA events.  float32 runs with TF32 off on both sides (true float32).  The
`err` column is max|pycnn - torch| / max|torch| of the timed call's result,
a check that the kernels are right at these sizes too.  The table comes
last: op, shape, dtype, pycnn ms, torch ms, ratio (torch ms / pycnn ms, as in
`pycnn bench`: above 1, pycnn is faster).

    python scripts/gpu_bench.py [--budget-s 100] [--json results.json]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as TF

import pycnn  # noqa: F401  (loads the kernels)

ops = torch.ops.pycnn
aten = torch.ops.aten

# name, input (N, C, H, W), weight (K, kh, kw), stride, padding, groups
CONV_SHAPES = [
    ("resnet50.conv1", (32, 3, 224, 224), (64, 7, 7), 2, 3, 1),
    ("resnet.layer1.3x3", (32, 64, 56, 56), (64, 3, 3), 1, 1, 1),
    ("resnet50.layer1.1x1", (32, 256, 56, 56), (64, 1, 1), 1, 0, 1),
    ("resnet.layer4.3x3", (32, 512, 7, 7), (512, 3, 3), 1, 1, 1),
    ("vgg16.conv3_2", (16, 256, 56, 56), (256, 3, 3), 1, 1, 1),
    ("mobilenet.dw3x3", (32, 128, 56, 56), (128, 3, 3), 1, 1, 128),
]

# name, op, input (N, C, H, W), options
POOL_SHAPES = [
    ("resnet.maxpool", "max_pool2d", (32, 64, 112, 112), dict(kernel=3, stride=2, padding=1)),
    ("vgg16.maxpool", "max_pool2d", (16, 128, 112, 112), dict(kernel=2, stride=2, padding=0)),
    ("inception.avgpool", "avg_pool2d", (32, 256, 35, 35), dict(kernel=3, stride=1, padding=1)),
    ("resnet50.head", "adaptive_avg_pool2d", (32, 2048, 7, 7), dict(size=1)),
    ("vgg16.adaptive_max", "adaptive_max_pool2d", (32, 512, 14, 14), dict(size=7)),
]


def conv_cases(shape, dtype):
    name, (n, c, h, w), (k, kh, kw), stride, padding, groups = shape
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
    wt = torch.randn(k, c // groups, kh, kw, device="cuda", dtype=dtype)
    s, p, d = [stride, stride], [padding, padding], [1, 1]
    out = TF.conv2d(x, wt, None, s, p, d, groups)
    g = torch.randn_like(out)
    label = f"{name} {n}x{c}x{h}x{w} k{k}x{kh}x{kw}" + (f" s{stride}" if stride > 1 else "") + \
        (f" g{groups}" if groups > 1 else "")

    def torch_backward(mask, index):
        return lambda: aten.convolution_backward(g, x, wt, None, s, p, d, False, [0, 0], groups,
                                                 mask)[index]

    return [
        ("conv2d", label, lambda: ops.conv2d(x, wt, None, s, p, d, groups),
         lambda: TF.conv2d(x, wt, None, s, p, d, groups)),
        ("conv2d_input_backward", label,
         lambda: ops.conv2d_input_backward(g, wt, list(x.shape), s, p, d, groups),
         torch_backward([True, False, False], 0)),
        ("conv2d_weight_backward", label,
         lambda: ops.conv2d_weight_backward(g, x, list(wt.shape), s, p, d, groups),
         torch_backward([False, True, False], 1)),
    ]


def pool_cases(shape, dtype):
    name, op, (n, c, h, w), o = shape
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
    label = f"{name} {n}x{c}x{h}x{w}"
    if op == "max_pool2d":
        k, s, p = [o["kernel"]] * 2, [o["stride"]] * 2, [o["padding"]] * 2
        out, idx = aten.max_pool2d_with_indices(x, k, s, p, [1, 1], False)
        g = torch.randn_like(out)
        return [("max_pool2d", label, lambda: ops.max_pool2d_with_indices(x, k, s, p, [1, 1], False)[0],
                 lambda: aten.max_pool2d_with_indices(x, k, s, p, [1, 1], False)[0]),
                ("max_pool2d_backward", label,
                 lambda: ops.max_pool2d_backward(g, idx, list(x.shape), k, s, p, [1, 1], False),
                 lambda: aten.max_pool2d_with_indices_backward(g, x, k, s, p, [1, 1], False, idx))]
    if op == "avg_pool2d":
        k, s, p = [o["kernel"]] * 2, [o["stride"]] * 2, [o["padding"]] * 2
        g = torch.randn_like(TF.avg_pool2d(x, k, s, p))
        return [("avg_pool2d", label, lambda: ops.avg_pool2d(x, k, s, p, False, True, None),
                 lambda: aten.avg_pool2d(x, k, s, p, False, True, None)),
                ("avg_pool2d_backward", label,
                 lambda: ops.avg_pool2d_backward(g, list(x.shape), k, s, p, False, True, None),
                 lambda: aten.avg_pool2d_backward(g, x, k, s, p, False, True, None))]
    size = [o["size"]] * 2
    if op == "adaptive_avg_pool2d":
        g = torch.randn_like(TF.adaptive_avg_pool2d(x, size))
        return [("adaptive_avg_pool2d", label, lambda: ops.adaptive_avg_pool2d(x, size),
                 lambda: aten._adaptive_avg_pool2d(x, size)),
                ("adaptive_avg_pool2d_backward", label,
                 lambda: ops.adaptive_avg_pool2d_backward(g, list(x.shape)),
                 lambda: aten._adaptive_avg_pool2d_backward(g, x))]
    out, idx = aten.adaptive_max_pool2d(x, size)
    g = torch.randn_like(out)
    return [("adaptive_max_pool2d", label, lambda: ops.adaptive_max_pool2d(x, size)[0],
             lambda: aten.adaptive_max_pool2d(x, size)[0]),
            ("adaptive_max_pool2d_backward", label,
             lambda: ops.adaptive_max_pool2d_backward(g, idx, list(x.shape)),
             lambda: aten.adaptive_max_pool2d_backward(g, x, idx))]


def time_ms(fn, target_s=0.25, max_reps=25):
    """Median milliseconds of one call, after warm-up; the result of the last call."""
    for _ in range(2):
        result = fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    once = time.perf_counter() - start
    reps = max(3, min(max_reps, int(target_s / max(once, 1e-6))))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(reps)]
    for begin, end in events:
        begin.record()
        result = fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(b.elapsed_time(e) for b, e in events), result


def relative_error(ours, theirs):
    ours, theirs = ours.float(), theirs.float()
    scale = theirs.abs().max().item()
    diff = (ours - theirs).abs().max().item()
    return diff / scale if scale > 0 else diff


def format_table(rows):
    header = ("op", "shape", "dtype", "pycnn ms", "torch ms", "ratio", "err")
    body = [(r["op"], r["shape"], r["dtype"], f"{r['pycnn_ms']:.3f}", f"{r['torch_ms']:.3f}",
             f"{r['ratio']:.2f}", f"{r['err']:.1e}") for r in rows]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=100.0,
                        help="stop starting new rows after this many seconds")
    parser.add_argument("--dtype", action="append", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA GPU visible", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    dtypes = [getattr(torch, d) for d in (args.dtype or ["float32", "float16"])]
    start = time.perf_counter()
    rows, skipped = [], 0
    for dtype in dtypes:
        builders = [lambda s=s: conv_cases(s, dtype) for s in CONV_SHAPES] + \
                   [lambda s=s: pool_cases(s, dtype) for s in POOL_SHAPES]
        for build in builders:
            if time.perf_counter() - start > args.budget_s:
                skipped += 1
                continue
            for op, shape, ours, theirs in build():
                ours_ms, ours_out = time_ms(ours)
                torch_ms, torch_out = time_ms(theirs)
                row = dict(op=op, shape=shape, dtype=str(dtype).replace("torch.", ""),
                           pycnn_ms=ours_ms, torch_ms=torch_ms, ratio=torch_ms / ours_ms,
                           err=relative_error(ours_out, torch_out))
                rows.append(row)
                print(f"  {row['op']:<28} {row['shape']:<44} {row['dtype']:<8} "
                      f"{ours_ms:9.3f} {torch_ms:9.3f}", flush=True)
                del ours_out, torch_out
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                           rows=rows, skipped_shapes=skipped), f, indent=1)
    print()
    if skipped:
        print(f"(time budget reached: {skipped} shape(s) not measured)")
    print(f"pycnn vs torch on {torch.cuda.get_device_name()}, torch {torch.__version__}; "
          f"ratio = torch ms / pycnn ms (above 1: pycnn faster); TF32 off")
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
