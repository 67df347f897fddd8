"""The project's speed targets, checked against one run's results.

Ratios are torch time / pycnn time (above 1: pycnn is faster).  A target
that none of the run's results bears on is "not measured"; a case whose
pycnn side failed counts against every target it belongs to.
"""
import dataclasses
import math

CONV_FORWARD_GEOMEAN, CONV_FORWARD_MIN = 1.0, 0.7
CONV_BOTH_GEOMEAN, CONV_BOTH_MIN = 1.2, 0.8
LARGE_LAYER_PEAK_SHARE = 0.70
POOL_MIN = 1.0               # never slower than torch
# NCHW max pooling, where torch is slow: cells where torch moves less than
# a third of the copy bandwidth, so that 3x torch stays within it.  (Where
# torch's own kernel runs nearer memory speed, as most of its NCHW
# backwards do, 3x would take more than the copy bandwidth.)
SLOW_TORCH_POOL_MIN = 3.0
POOL_BANDWIDTH_SHARE = 0.5   # within 2x of copy bandwidth on large inputs
TRAIN_MIN = 1.0
TRAIN_MODELS = (("lenet5", "LeNet-5"), ("resnet18", "ResNet-18"))


@dataclasses.dataclass
class Target:
    name: str
    goal: str
    value: str = "-"
    holds: bool = None  # None: not measured in this run
    detail: str = ""

    @property
    def status(self):
        return {True: "holds", False: "FAILS", None: "not measured"}[self.holds]

    def to_dict(self):
        return dict(dataclasses.asdict(self), status=self.status)


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def label(result):
    """A result's name in the verdict: case, layout when not NCHW, pass when it matters."""
    text = result.case.name
    if result.layout != "nchw":
        text += f" [{result.layout}]"
    if result.case.group == "pool":
        text += f" {result.pass_}"
    return text


def format_ratio(ratio):
    """2.00×, 0.35×, 0.0048×: two decimals, or two significant digits under 0.1."""
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def _split(rows):
    """(rows with a timing, labels of rows whose pycnn side failed)."""
    timed = [r for r in rows if not r.error and r.ratio is not None]
    failed = [label(r) for r in rows if r.error or r.ratio is None]
    return timed, failed


def _failures(failed):
    return f"{len(failed)} failed: " + ", ".join(failed) if failed else ""


def geomean_target(rows, name, floor):
    if not rows:
        return Target(name, f"≥ {floor:.1f}×")
    timed, failed = _split(rows)
    mean = geomean(r.ratio for r in timed)
    value = "-" if mean is None else f"{format_ratio(mean)} over {len(timed)}"
    return Target(name, f"≥ {floor:.1f}×", value,
                  holds=not failed and mean is not None and mean >= floor, detail=_failures(failed))


def min_target(rows, name, floor):
    if not rows:
        return Target(name, f"≥ {floor:.1f}×")
    timed, failed = _split(rows)
    worst = min(timed, key=lambda r: r.ratio, default=None)
    value = "-" if worst is None else f"{format_ratio(worst.ratio)} ({label(worst)})"
    return Target(name, f"≥ {floor:.1f}×", value,
                  holds=not failed and worst is not None and worst.ratio >= floor,
                  detail=_failures(failed))


def share_target(rows, name, share, fraction_of, reference):
    """Every row's pycnn rate at least `share` of a reference rate."""
    goal = f"≥ {share:.0%} of {reference}"
    if not rows:
        return Target(name, goal)
    timed, failed = _split(rows)
    fractions = [(label(r), fraction_of(r)) for r in timed]
    low = min((f for _, f in fractions), default=None)
    detail = ", ".join(f"{n} {f:.0%}" for n, f in fractions)
    if failed:
        detail += ("; " if detail else "") + _failures(failed)
    return Target(name, goal, "-" if low is None else f"lowest {low:.0%}",
                  holds=not failed and low is not None and low >= share, detail=detail)


def evaluate(results, peak, itemsize=4):
    """The targets, in the order the report prints them."""
    convs = [r for r in results if r.case.group == "conv" and r.case.op == "conv2d"]
    forward = [r for r in convs if r.pass_ == "forward"]
    both = [r for r in convs if r.pass_ == "both"]
    large = [r for r in forward if r.case.large]
    pools = [r for r in results if r.case.group == "pool" and r.pass_ in ("forward", "backward")]
    nchw_max = [r for r in pools if r.case.op == "max_pool2d" and r.layout == "nchw"]
    slow_limit = peak.bandwidth_gbs * 1e9 / SLOW_TORCH_POOL_MIN
    torch_slow = [r for r in nchw_max if r.torch is None or r.rate("torch") < slow_limit]
    big_pools = [r for r in pools if r.case.input_elements() * itemsize >= peak.large_input_bytes]
    trains = [r for r in results if r.case.group == "train"]

    targets = [
        geomean_target(forward, "conv2d forward, geomean", CONV_FORWARD_GEOMEAN),
        min_target(forward, "conv2d forward, every layer", CONV_FORWARD_MIN),
        share_target(large, "conv2d forward, large layers", LARGE_LAYER_PEAK_SHARE,
                     lambda r: r.rate("pycnn") / (peak.gflops * 1e9), "peak"),
        geomean_target(both, "conv2d forward+backward, geomean", CONV_BOTH_GEOMEAN),
        min_target(both, "conv2d forward+backward, every layer", CONV_BOTH_MIN),
        min_target(pools, "pooling never slower (every op, layout, fwd, bwd)", POOL_MIN),
        min_target(torch_slow, "NCHW max pool where torch is slow (< 1/3 copy bandwidth)",
                   SLOW_TORCH_POOL_MIN),
        share_target(big_pools, f"pooling, inputs ≥ {peak.large_input_bytes >> 20} MiB",
                     POOL_BANDWIDTH_SHARE, lambda r: r.rate("pycnn") / (peak.bandwidth_gbs * 1e9),
                     "copy bandwidth"),
    ]
    for model, title in TRAIN_MODELS:
        targets.append(min_target([r for r in trains if r.case.model == model],
                                  f"training step {title}", TRAIN_MIN))
    for r in trains:
        if r.case.model not in dict(TRAIN_MODELS):
            targets.append(min_target([r], r.case.name, TRAIN_MIN))

    checked = [r for r in results if r.agrees is not None]
    wrong = sorted({r.case.name + ("" if r.layout == "nchw" else f" [{r.layout}]")
                    for r in checked if not r.agrees})
    agreeing = sum(bool(r.agrees) for r in checked)
    targets.append(Target("outputs agree with torch", "all within tolerance",
                          f"{agreeing}/{len(checked)}" if checked else "-",
                          holds=(not wrong) if checked else None, detail=", ".join(wrong)))
    return targets
