"""Side-by-side timing: pycnn and torch measured in turns within one run.

Each sample of a contender is timed right after (or before) a sample of the
other, and the order flips every repeat, so that drift in clock speed or in
the load from other processes lands on both alike.  Only their ratio is
meant to be read across machines.
"""
import dataclasses
import math
import statistics
import time

import torch


@dataclasses.dataclass
class Stats:
    """Seconds per call over the repeats: median and spread."""
    samples: list

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def min(self):
        return min(self.samples)

    @property
    def max(self):
        return max(self.samples)

    def quantile(self, q):
        """Linear-interpolated quantile of the samples (q in [0, 1])."""
        ordered = sorted(self.samples)
        position = q * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def iqr(self):
        return self.quantile(0.75) - self.quantile(0.25)

    @property
    def relative_spread(self):
        """Interquartile range over the median: the noise of this measurement."""
        return self.iqr / self.median if self.median > 0 else 0.0

    def to_dict(self):
        return {"median_s": self.median, "q1_s": self.quantile(0.25), "q3_s": self.quantile(0.75),
                "min_s": self.min, "max_s": self.max, "samples_s": list(self.samples)}


class _CpuClock:
    def sample(self, fn, number):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - start) / number


class _CudaClock:
    """CUDA events around the calls: GPU time, without the host's idle waits."""

    def __init__(self, device):
        self.device = torch.device(device)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def sample(self, fn, number):
        torch.cuda.synchronize(self.device)
        self.start.record()
        for _ in range(number):
            fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) * 1e-3 / number


def clock_for(device):
    return _CudaClock(device) if torch.device(device).type == "cuda" else _CpuClock()


def compare(fns, device="cpu", warmup=2, repeats=10, min_sample_s=0.0, budget_s=None,
            min_repeats=3):
    """Times each callable of `fns` (name -> callable) `repeats` times after
    `warmup` untimed calls each, taking turns; returns name -> Stats of the
    seconds per call.

    Calls faster than `min_sample_s` are looped (the same count for every
    contender, so their samples cover equal work).  With `budget_s`, a case
    too slow for `repeats` rounds in that many seconds gets fewer (never
    under `min_repeats`), and warm-up stops after the first round once it
    has used a tenth of the budget."""
    clock = clock_for(device)
    names = list(fns)
    started = time.perf_counter()
    for round_ in range(warmup):
        if round_ and budget_s is not None and time.perf_counter() - started > 0.1 * budget_s:
            break
        for name in names:
            fns[name]()
    # One timed call each: how long a round takes, and how many calls a sample needs.
    single = {name: clock.sample(fns[name], 1) for name in names}
    number = 1
    if min_sample_s > 0:
        fastest = min(single.values())
        number = 1000 if fastest <= 0 else max(1, min(1000, math.ceil(min_sample_s / fastest)))
    if budget_s is not None:
        per_round = sum(single.values()) * number
        if per_round > 0:
            repeats = max(min(min_repeats, repeats), min(repeats, int(budget_s / per_round)))
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(clock.sample(fns[name], number))
    return {name: Stats(values) for name, values in samples.items()}
