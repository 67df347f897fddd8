"""The benchmark suite: pycnn's kernels and torch's, side by side in one run.

    python -m pycnn bench                       # the default layer set, CPU
    python -m pycnn bench --model resnet18      # every conv and pool shape of ResNet-18
    python -m pycnn bench --quick --json out.json --plot ratios.png

or from Python:

    import pycnn.bench
    report = pycnn.bench.benchmark(ops=["conv2d"], repeats=5)
    print(report.table())

For every case, pycnn and torch.nn.functional run on the same tensors, in
turns, after a warm-up; the table gives the medians and spreads, the rates
(GFLOP/s for convolutions, GB/s for pooling, images/s for training steps),
the share of the machine's peak (measured at the start of each run) and the
ratio torch time / pycnn time, then a verdict on the project's targets.
"""
import argparse
import contextlib
import sys

import torch

from .. import _extension
from . import cases as cases_module
from . import environment, peak as peak_module, runner
from .cases import POOL_OPS
from .report import Report

__all__ = ["benchmark", "Report", "add_arguments", "run"]

OPS = ("conv2d",) + POOL_OPS + ("train",)
# Ops a run may also ask for, outside the default set: conv2d_relu times each
# convolution with its ReLU fused (pycnn.functional.conv2d_relu) against
# torch's conv2d followed by an in-place ReLU.
EXTRA_OPS = ("conv2d_relu",)
OP_ALIASES = {"conv": ("conv2d",), "pool": POOL_OPS, "pooling": POOL_OPS, "all": OPS}
PASSES = ("forward", "backward", "both")
PASS_ALIASES = {"fwd": "forward", "bwd": "backward", "fwd+bwd": "both"}
DTYPES = ("float32", "float64", "bfloat16", "float16")
LAYOUTS = ("default", "nchw", "channels_last", "both")
# (repeats, warm-up calls, shortest sample in seconds, time budget per case
# and pass in seconds) when not given.
DEFAULT_TIMING = {"cpu": (10, 2, 0.002, 30.0), "cuda": (30, 5, 0.001, 30.0),
                  "quick": (2, 1, 0.0, None)}


def _names(values, known, aliases, what):
    """A list of names from a comma-separated string or a list, aliases expanded."""
    if values is None:
        return None
    if isinstance(values, str):
        values = [values]
    names = []
    for value in values:
        for word in str(value).split(","):
            word = word.strip()
            if not word:
                continue
            expanded = aliases.get(word, (word,))
            if isinstance(expanded, str):
                expanded = (expanded,)
            for name in expanded:
                if name not in known:
                    raise ValueError(f"pycnn bench: unknown {what} {word!r}; choose from "
                                     f"{', '.join(list(known) + sorted(aliases))}")
                if name not in names:
                    names.append(name)
    return names


def _layouts_for(layout):
    """The layouts each case runs in.  'default': convolutions and training in
    NCHW, pooling in both layouts (its targets cover both)."""
    def layouts(case):
        if layout == "both":
            return ["nchw", "channels_last"]
        if layout in ("nchw", "channels_last"):
            return [layout]
        if case.group == "pool":
            return ["nchw", "channels_last"]
        return ["nchw"]
    return layouts


def select_cases(device="cpu", ops=None, model=None, batch=None, image_size=None, quick=False,
                 filters=None):
    """The cases a run would measure, and the name of that set (its scope)."""
    if model:
        chosen = cases_module.model_cases(model, batch=batch or 8, image_size=image_size)
        scope = f"layers of {model}"
    elif quick:
        chosen, scope = cases_module.quick_cases(), "quick shapes"
    else:
        chosen, scope = cases_module.default_cases(device), "default"
    ops = list(OPS) if ops is None else ops
    if "conv2d_relu" in ops:
        chosen = chosen + [cases_module.with_relu(c) for c in chosen if c.group == "conv"]
    chosen = [c for c in chosen if (c.group == "train" and "train" in ops)
              or getattr(c, "op", None) in ops]
    if filters:
        words = [f.lower() for f in filters]
        chosen = [c for c in chosen if any(w in c.name.lower() for w in words)]
        scope += ", filtered"
    if set(ops) != set(OPS) and scope == "default":
        scope = "default, some ops"
    return chosen, scope


@contextlib.contextmanager
def _torch_settings(device, threads, tf32, cudnn_benchmark):
    """torch's thread count, TF32 and cuDNN switches (and the current GPU) for
    the run, restored afterwards."""
    saved = (torch.get_num_threads(), torch.backends.cudnn.allow_tf32,
             torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    on_gpu = torch.device(device).type == "cuda"
    with torch.cuda.device(torch.device(device)) if on_gpu else contextlib.nullcontext():
        try:
            if threads is not None:
                torch.set_num_threads(int(threads))
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
            yield
        finally:
            torch.set_num_threads(saved[0])
            (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.benchmark) = saved[1:]


def benchmark(device="cpu", ops=None, passes=None, dtype="float32", threads=None, repeats=None,
              warmup=None, model=None, batch=None, image_size=None, layout="default", filters=None,
              quick=False, inference=False, check=True, progress=False, peak_seconds=None,
              tf32=False, cudnn_benchmark=False, min_sample_s=None, budget_s=None, seed=0,
              cases=None):
    """Runs the benchmark and returns a Report (report.table(), .to_dict(),
    .save_json(path), .plot(path), .results, .targets).

    device: "cpu" or "cuda".  ops: names among conv2d, max_pool2d, avg_pool2d,
    adaptive_avg_pool2d, adaptive_max_pool2d, train (or "conv", "pool");
    default all.  passes: among forward, backward, both; default all.
    threads: CPU threads for both libraries (default: torch's).  model: a
    model name (pycnn.models or torchvision.models) whose conv and pooling
    shapes replace the default set, at `batch` (8) and `image_size`.
    layout: "default" (pooling in NCHW and channels_last, the rest NCHW),
    "nchw", "channels_last" or "both".  filters: substrings of case names to
    keep.  budget_s: seconds a case's timed rounds may take before its repeats
    are cut (to no fewer than 3; default 30, 0 for no limit).  quick: tiny
    shapes, 2 repeats (smoke test).  inference: time the
    forward pass under torch.no_grad.  check: compare forward outputs first.
    cases: an explicit list of cases (pycnn.bench.cases) instead of a set.
    """
    ops = _names(ops, OPS + EXTRA_OPS, OP_ALIASES, "op")
    passes = _names(passes, PASSES, PASS_ALIASES, "pass") or list(PASSES)
    if dtype not in DTYPES:
        raise ValueError(f"pycnn bench: dtype must be one of {', '.join(DTYPES)}, got dtype={dtype!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"pycnn bench: layout must be one of {', '.join(LAYOUTS)}, got layout={layout!r}")
    device = str(device)
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and not torch.cuda.is_available():
        raise RuntimeError("pycnn bench: device='cuda' but no CUDA GPU is visible")
    if on_gpu and "cuda" not in _extension.backends():
        raise RuntimeError("pycnn bench: device='cuda' but this build of pycnn has no CUDA kernels "
                           "(rebuild with PYCNN_CUDA=1)")
    defaults = DEFAULT_TIMING["quick" if quick else "cuda" if on_gpu else "cpu"]
    repeats = defaults[0] if repeats is None else int(repeats)
    warmup = defaults[1] if warmup is None else int(warmup)
    min_sample_s = defaults[2] if min_sample_s is None else float(min_sample_s)
    budget_s = defaults[3] if budget_s is None else (float(budget_s) or None)
    if repeats < 1 or warmup < 0:
        raise ValueError(f"pycnn bench: repeats must be at least 1 and warmup at least 0, "
                         f"got repeats={repeats}, warmup={warmup}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"pycnn bench: threads must be at least 1, got threads={threads}")

    if cases is None:
        chosen, scope = select_cases(device, ops, model, batch, image_size, quick, filters)
    else:
        chosen, scope = list(cases), "given cases"
    torch_dtype = getattr(torch, dtype)
    with _torch_settings(device, threads, tf32, cudnn_benchmark):
        threads = torch.get_num_threads()
        peak_seconds = (0.05 if quick else 1.0) if peak_seconds is None else float(peak_seconds)
        peak = peak_module.measure(device, threads, torch_dtype, seconds=peak_seconds, tf32=tf32,
                                   copy_megabytes=32 if quick else 256)
        env = environment.collect(device, threads)
        settings = runner.Settings(device=device, dtype=torch_dtype, repeats=repeats, warmup=warmup,
                                   min_sample_s=min_sample_s, inference=inference, check=check,
                                   budget_s=budget_s, seed=seed, tf32=bool(tf32))
        units = runner.plan(chosen, _layouts_for(layout), passes)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sum(len(p) for _, _, p in units), desc="pycnn bench", unit="pass",
                       file=sys.stderr, leave=False, dynamic_ncols=True)
        try:
            results = runner.run_units(units, settings, bar)
        finally:
            if bar is not None:
                bar.close()
    options = {"device": device, "dtype": dtype, "ops": ops or list(OPS), "passes": passes,
               "threads": threads, "repeats": repeats, "warmup": warmup,
               "min_sample_s": min_sample_s, "budget_s": budget_s, "model": model, "batch": batch,
               "image_size": image_size, "layout": layout, "filters": filters, "quick": quick,
               "inference": inference, "check": check, "tf32": tf32,
               "cudnn_benchmark": cudnn_benchmark, "seed": seed}
    return Report(environment=env, options=options, peak=peak, results=results, scope=scope)


# ------------------------------------------------------------------ command line

def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("ratio = torch time / pycnn time (above 1: pycnn is faster).  Convolutions "
                     "count 2·N·K·Ho·Wo·(C/groups)·R·S flops per pass (fwd+bwd: three passes); "
                     "pooling counts bytes read + written.")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--ops", action="append", metavar="LIST",
                        help=f"comma-separated ops: {', '.join(OPS + EXTRA_OPS)}, or conv, pool "
                             f"(default all but {', '.join(EXTRA_OPS)})")
    parser.add_argument("--passes", action="append", metavar="LIST",
                        help="comma-separated passes: forward, backward, both (default all)")
    parser.add_argument("--dtype", default="float32", choices=DTYPES)
    parser.add_argument("--threads", type=int, help="CPU threads for both libraries (default: torch's)")
    parser.add_argument("--repeats", type=int, help="timed samples per contender (default 10; CUDA 30)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (default 2; CUDA 5)")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="cut the repeats of a case whose timed rounds would take longer "
                             "(to no fewer than 3; default 30, 0: no limit)")
    parser.add_argument("--model", metavar="NAME",
                        help="measure every conv and pool shape of this model (pycnn.models or "
                             "torchvision.models name, e.g. resnet18) instead of the default set")
    parser.add_argument("--batch", type=int, help="batch size for --model (default 8)")
    parser.add_argument("--image-size", type=int, help="input height and width for --model")
    parser.add_argument("--layout", default="default", choices=LAYOUTS,
                        help="memory layout: default (pooling in both, the rest NCHW), nchw, "
                             "channels_last or both")
    parser.add_argument("--channels-last", dest="layout", action="store_const", const="channels_last",
                        help="same as --layout channels_last")
    parser.add_argument("--filter", dest="filters", action="append", metavar="TEXT",
                        help="keep only cases whose name contains TEXT (repeatable)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes, 2 repeats: a smoke test, not a measurement")
    parser.add_argument("--inference", action="store_true",
                        help="time the forward pass under torch.no_grad (default: as in training)")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="skip comparing pycnn's forward outputs with torch's")
    parser.add_argument("--json", metavar="PATH", help="write results and environment as JSON")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG bar chart of the ratios")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    parser.add_argument("--peak-seconds", type=float, help="length of the peak measurement (default 1)")
    parser.add_argument("--tf32", action="store_true",
                        help="CUDA: let torch use TF32 for float32 (default off: true float32)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="CUDA: let cuDNN pick its fastest algorithm per shape")
    parser.add_argument("--seed", type=int, default=0)


def run(args):
    try:
        report = benchmark(device=args.device, ops=args.ops, passes=args.passes, dtype=args.dtype,
                           threads=args.threads, repeats=args.repeats, warmup=args.warmup,
                           model=args.model, batch=args.batch, image_size=args.image_size,
                           layout=args.layout, filters=args.filters, quick=args.quick,
                           inference=args.inference, check=args.check,
                           progress=args.progress and sys.stderr.isatty(),
                           peak_seconds=args.peak_seconds, tf32=args.tf32,
                           cudnn_benchmark=args.cudnn_benchmark,
                           budget_s=args.time_budget, seed=args.seed)
    except (ValueError, RuntimeError) as error:
        print(f"{error}", file=sys.stderr)
        return 2
    print(report.table())
    if args.json:
        report.save_json(args.json)
        print(f"\nwrote {args.json}")
    if args.plot:
        report.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0
