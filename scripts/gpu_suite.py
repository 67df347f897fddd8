"""`python -m pycnn bench --device cuda` in the configurations that GPU-speed
targets are set on, in one process, with a compact summary last.

Configurations (each pycnn and torch side by side, CUDA events, median):
  conv f32       float32 with TF32 off on both sides, NCHW and channels_last
  conv tf32      float32 with TF32 on both sides, channels_last
  conv f16/bf16  half types, channels_last
  pool           every pooling op, forward and backward, both layouts
  train          whole training steps (LeNet-5, ResNet-18, ResNet-50 AMP
                 channels_last, VGG-16)
Each configuration's full table goes to the log (stdout); --json writes every
report.  The summary gives, per configuration and pass, the geometric mean
of torch time / pycnn time and the worst case, then one row per conv layer.

    python scripts/gpu_suite.py [--budget-s 150] [--json suite.json] [--only conv,pool]
"""
import argparse
import json
import math
import sys
import time
import traceback

import torch

import pycnn.bench as bench

CONFIGS = [
    # name, group, benchmark() arguments
    ("conv f32 nchw", "conv", dict(ops=["conv2d"], passes=["forward", "both"], dtype="float32",
                                   layout="nchw", tf32=False)),
    ("conv f32 cl", "conv", dict(ops=["conv2d"], passes=["forward", "both"], dtype="float32",
                                 layout="channels_last", tf32=False)),
    ("conv tf32 cl", "conv", dict(ops=["conv2d"], passes=["forward", "both"], dtype="float32",
                                  layout="channels_last", tf32=True)),
    ("conv f16 cl", "conv", dict(ops=["conv2d"], passes=["forward", "both"], dtype="float16",
                                 layout="channels_last")),
    ("conv bf16 cl", "conv", dict(ops=["conv2d"], passes=["forward", "both"], dtype="bfloat16",
                                  layout="channels_last")),
    ("pool f32", "pool", dict(ops=["pool"], passes=["forward", "backward"], dtype="float32",
                              layout="both")),
    ("train", "train", dict(ops=["train"], dtype="float32")),
]


def geomean(values):
    values = [v for v in values if v is not None and v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def fmt(value, digits=2):
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=150.0,
                        help="stop starting configurations after this many seconds")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--only", help="comma-separated groups: conv, pool, train")
    parser.add_argument("--json", help="write every configuration's report here")
    parser.add_argument("--device", default="cuda", help="cuda (default); cpu only to try the script")
    parser.add_argument("--quick", action="store_true", help="tiny shapes (to try the script)")
    args = parser.parse_args(argv)
    groups = set(args.only.split(",")) if args.only else {"conv", "pool", "train"}

    start = time.perf_counter()
    reports, summary, layers = {}, [], {}
    for name, group, options in CONFIGS:
        if group not in groups:
            continue
        if time.perf_counter() - start > args.budget_s:
            summary.append((name, "skipped: out of time", None, None, None))
            continue
        begun = time.perf_counter()
        try:
            report = bench.benchmark(device=args.device, repeats=args.repeats, warmup=args.warmup,
                                     budget_s=2.0, peak_seconds=0.2, quick=args.quick, **options)
        except Exception:  # one configuration's failure must not hide the others
            traceback.print_exc()
            summary.append((name, "FAILED (see log)", None, None, None))
            continue
        print(f"\n##### {name} ({time.perf_counter() - begun:.0f} s)\n{report.table()}", flush=True)
        reports[name] = report.to_dict()
        for pass_ in dict.fromkeys(r.pass_ for r in report.results):
            rows = [r for r in report.results if r.pass_ == pass_]
            ratios = [r.ratio for r in rows]
            bad = [r for r in rows if r.error or r.agrees is False]
            worst = min((r for r in rows if r.ratio), key=lambda r: r.ratio, default=None)
            peaks = [report.percent_of_peak(r, "pycnn") for r in rows]
            summary.append((name, pass_, geomean(ratios),
                            (worst.ratio, f"{worst.case.name} {worst.layout}") if worst else None,
                            f"{len(bad)} failed/disagreed" if bad else
                            (f"pycnn {fmt(geomean(peaks), 0)}% of peak (geomean)" if group == "conv"
                             else "")))
            if group == "conv":
                for r in rows:
                    layers.setdefault(r.case.name, {})[f"{name} {pass_}"] = r.ratio
            elif group == "train":
                for r in rows:
                    summary.append(("  " + r.case.name, r.layout, r.ratio, None,
                                    f"pycnn {fmt(report.scaled_rate(r, 'pycnn'), 0)} img/s, "
                                    f"torch {fmt(report.scaled_rate(r, 'torch'), 0)} img/s"
                                    # e.g. convolutions in another dtype under autocast
                                    + (f"; NOTE: {r.note}" if r.note else "")))

    if args.json:
        with open(args.json, "w") as f:
            json.dump(reports, f, indent=1)

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device
    print(f"\n==== pycnn vs torch on {where}: "
          f"ratio = torch time / pycnn time ({time.perf_counter() - start:.0f} s)")
    print(f"{'configuration':24} {'pass':10} {'geomean':>8} {'worst':>6}  worst case / note")
    for name, pass_, gm, worst, note in summary:
        worst_text = f"{worst[0]:6.2f}  {worst[1]}" if worst else f"{'':6}  "
        print(f"{name:24} {pass_:10} {fmt(gm):>8} {worst_text} {note or ''}")
    if layers:
        columns = list(dict.fromkeys(c for row in layers.values() for c in row))
        short = [c.replace("conv ", "").replace("forward", "F").replace("both", "FB") for c in columns]
        print("\nconv ratio per layer: " + ", ".join(short))
        for layer, row in layers.items():
            print(f"{layer[:26]:26} " + " ".join(f"{fmt(row.get(c)):>5}" for c in columns))
    return 0


if __name__ == "__main__":
    sys.exit(main())
