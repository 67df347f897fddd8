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


def calls_per_sample(clock, fns, min_sample_s, cap=1000):
    """How many back-to-back calls make one sample of at least min_sample_s for
    the fastest contender (the same count for all, so that their samples
    cover equal work); 1 for anything slower than that."""
    fastest = min(clock.sample(fn, 1) for fn in fns)
    if fastest <= 0:
        return cap
    return max(1, min(cap, math.ceil(min_sample_s / fastest)))


def compare(fns, device="cpu", warmup=2, repeats=10, min_sample_s=0.0):
    """Times each callable of `fns` (name -> callable) `repeats` times after
    `warmup` untimed calls each, taking turns; returns name -> Stats of the
    seconds per call."""
    clock = clock_for(device)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    number = calls_per_sample(clock, list(fns.values()), min_sample_s) if min_sample_s > 0 else 1
    samples = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(clock.sample(fns[name], number))
    return {name: Stats(values) for name, values in samples.items()}
