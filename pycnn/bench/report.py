"""A benchmark run's results as a terminal table, a JSON document and a bar chart."""
import dataclasses
import json
import math

import torch

from . import verdict as verdict_module

SCHEMA = "pycnn-bench/1"
PASS_NAMES = {"forward": "fwd", "backward": "bwd", "both": "fwd+bwd", "step": "step"}
WORK_UNITS = {"conv": "flop", "pool": "byte", "train": "image"}


@dataclasses.dataclass
class Report:
    """Everything one run produced."""
    environment: dict
    options: dict
    peak: object          # peak.Peak
    results: list         # runner.Result
    scope: str            # which cases ran: "default", "quick", "model resnet18", ...
    targets: list = None  # verdict.Target

    def __post_init__(self):
        if self.targets is None:
            itemsize = torch.empty((), dtype=getattr(torch, self.options["dtype"])).element_size()
            self.targets = verdict_module.evaluate(self.results, self.peak, itemsize)

    @property
    def on_gpu(self):
        return self.environment["device"].startswith("cuda")

    # -------------------------------------------------------------- rates

    def rate_unit(self, group):
        if group == "conv":
            return "TFLOP/s" if self.on_gpu else "GFLOP/s"
        return {"pool": "GB/s", "train": "images/s"}[group]

    def scaled_rate(self, result, side):
        """A contender's rate in the group's display unit."""
        rate = result.rate(side)
        if rate is None:
            return None
        scale = {"TFLOP/s": 1e-12, "GFLOP/s": 1e-9, "GB/s": 1e-9, "images/s": 1.0}
        return rate * scale[self.rate_unit(result.group)]

    def percent_of_peak(self, result, side):
        """Share of the arithmetic peak (conv) or copy bandwidth (pool)."""
        rate = result.rate(side)
        if rate is None or result.group == "train":
            return None
        reference = self.peak.gflops if result.group == "conv" else self.peak.bandwidth_gbs
        return 100.0 * rate / (reference * 1e9) if reference else None

    # -------------------------------------------------------------- table

    def table(self):
        lines = [self._title(), self._peak_line(), ""]
        for group, heading in (("conv", "conv2d"), ("pool", "pooling"), ("train", "training steps")):
            rows = [r for r in self.results if r.group == group]
            if rows:
                lines += self._section(group, heading, rows) + [""]
        lines += self.verdict_lines()
        return "\n".join(lines)

    def _title(self):
        env, opt = self.environment, self.options
        where = env.get("gpu") or env["cpu"]
        commit = (env["commit"] or "")[:10] + ("+dirty" if env.get("commit_dirty") else "")
        return (f"pycnn bench: {opt['device']} ({where}, {env['threads']} threads, {env['cpu_isa']}), "
                f"{opt['dtype']}, torch {env['torch']}, pycnn {env['pycnn']}"
                + (f" ({commit})" if commit else "")
                + f"; medians of {opt['repeats']} repeats after {opt['warmup']} warm-up"
                + (f" (n=... where a case's {opt['budget_s']:g} s budget cut them)"
                   if opt.get("budget_s") else ""))

    def _peak_line(self):
        p = self.peak
        unit, scale = ("TFLOP/s", 1e-3) if self.on_gpu else ("GFLOP/s", 1.0)
        return (f"100% = {p.gflops * scale:.4g} {unit} arithmetic ({p.gflops_source}); "
                f"{p.bandwidth_gbs:.4g} GB/s copy bandwidth ({p.bandwidth_source})")

    def _section(self, group, heading, rows):
        unit = self.rate_unit(group)
        peak_name = {"conv": "% peak", "pool": "% copy", "train": None}[group]
        header = ["case", "shape", "layout", "pass", "pycnn ms (IQR)", "torch ms (IQR)",
                  f"pycnn {unit}"] + ([peak_name] if peak_name else []) + \
                 [f"torch {unit}"] + ([peak_name] if peak_name else []) + ["torch/pycnn"]
        body, notes, previous = [], [], None
        for r in rows:
            key = (r.case.name, r.layout)
            first = key != previous
            previous = key
            cells = [r.case.name + (f" (×{r.case.count})" if getattr(r.case, "count", 1) > 1 else "")
                     if first else "", r.case.shape_text() if first else "",
                     _layout(r.layout) if first else "", PASS_NAMES[r.pass_]]
            if r.error:
                body.append(cells + [f"error: {r.error}"])
                continue
            repeats = self.options["repeats"]
            cells += [_time(r.pycnn, repeats), _time(r.torch, repeats),
                      _number(self.scaled_rate(r, "pycnn"))]
            if peak_name:
                cells.append(_percent(self.percent_of_peak(r, "pycnn")))
            cells.append(_number(self.scaled_rate(r, "torch")))
            if peak_name:
                cells.append(_percent(self.percent_of_peak(r, "torch")))
            flag = ""
            if r.agrees is False and first:
                flag = " !"
                notes.append(f"  ! {r.case.name}: pycnn's output differs from torch's "
                             f"(max relative difference {r.max_rel_diff:.2e})")
            if r.note and first:
                notes.append(f"  * {r.case.name}: {r.note}")
                flag += " *"
            cells.append(_ratio(r.ratio) + flag)
            body.append(cells)
        return [heading + ": ratio = torch time / pycnn time (above 1: pycnn faster); IQR as % of the median",
                *_columns(header, body), *notes]

    def verdict_lines(self):
        lines = ["verdict" + ("" if self.scope == "default" else
                              f" (the targets are set on the default cases; this run: {self.scope})")]
        header = ["target", "goal", "measured", "status"]
        body = [[t.name, t.goal, t.value, t.status] for t in self.targets]
        lines += _columns(header, body)
        details = [f"  {t.name}: {t.detail}" for t in self.targets if t.detail]
        if details:
            lines += ["details:"] + details
        measured = [t for t in self.targets if t.holds is not None]
        holding = sum(t.holds for t in measured)
        lines.append(f"{holding}/{len(measured)} measured targets hold")
        return lines

    # -------------------------------------------------------------- JSON

    def to_dict(self):
        return _finite({
            "schema": SCHEMA,
            "environment": self.environment,
            "options": self.options,
            "peak": self.peak.to_dict(),
            "results": [self._result_dict(r) for r in self.results],
            "verdict": {"scope": self.scope, "targets": [t.to_dict() for t in self.targets]},
        })

    def _result_dict(self, r):
        return {
            "name": r.case.name,
            "group": r.group,
            "op": getattr(r.case, "op", "train_step"),
            "model": r.case.model,
            "shape": r.case.shape_text(),
            "case": r.case.to_dict(),
            "layout": r.layout,
            "pass": r.pass_,
            "work": r.work,
            "work_unit": WORK_UNITS[r.group],
            "rate_unit": self.rate_unit(r.group),
            "pycnn": r.pycnn.to_dict() if r.pycnn else None,
            "torch": r.torch.to_dict() if r.torch else None,
            "pycnn_rate": self.scaled_rate(r, "pycnn"),
            "torch_rate": self.scaled_rate(r, "torch"),
            "pycnn_percent_of_peak": self.percent_of_peak(r, "pycnn"),
            "torch_percent_of_peak": self.percent_of_peak(r, "torch"),
            "ratio": r.ratio,
            "max_rel_diff": r.max_rel_diff,
            "agrees": r.agrees,
            "error": r.error,
            "note": r.note,
        }

    def save_json(self, path):
        with open(path, "w") as out:
            json.dump(self.to_dict(), out, indent=1, ensure_ascii=False)
            out.write("\n")

    # -------------------------------------------------------------- chart

    def plot(self, path):
        """A PNG bar chart of torch time / pycnn time per layer and pass."""
        # A bare Figure renders through Agg without pyplot, leaving the
        # caller's matplotlib backend and open figures alone.
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        labels, bars = [], {}
        for r in self.results:
            name = r.case.name + ("" if r.layout == "nchw" else f" [{_layout(r.layout)}]")
            if name not in bars:
                labels.append(name)
                bars[name] = []
            if r.ratio is not None:
                bars[name].append((r.pass_, r.ratio))
        colours = {"forward": "tab:blue", "backward": "tab:orange", "both": "tab:green",
                   "step": "tab:red"}
        figure = Figure(figsize=(9, 1.5 + 0.3 * len(labels)))
        axes = figure.subplots()
        for row, name in enumerate(labels):
            # Each layer's bars share its row, centred on it, whatever passes it has.
            height = 0.8 / max(1, len(bars[name]))
            for i, (pass_, ratio) in enumerate(bars[name]):
                axes.barh(row + (i - (len(bars[name]) - 1) / 2) * height, ratio, height=height,
                          color=colours[pass_])
        ratios = [ratio for pairs in bars.values() for _, ratio in pairs]
        passes = [p for p in colours if any(q == p for pairs in bars.values() for q, _ in pairs)]
        axes.set_yticks(range(len(labels)))
        axes.set_yticklabels(labels, fontsize=8)
        axes.invert_yaxis()
        axes.axvline(1.0, color="black", linewidth=0.8)
        if ratios and max(ratios) / max(min(ratios), 1e-12) > 20:
            axes.set_xscale("log")
        axes.set_xlabel("torch time / pycnn time (above 1: pycnn faster)")
        env = self.environment
        axes.set_title(f"pycnn vs torch, {self.options['device']} ({env.get('gpu') or env['cpu']}, "
                       f"{env['threads']} threads), {self.options['dtype']}", fontsize=9)
        if passes:
            axes.legend(handles=[Patch(color=colours[p], label=PASS_NAMES[p]) for p in passes],
                        fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)


def _finite(value):
    """JSON has no infinity or NaN: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _layout(layout):
    return {"nchw": "NCHW", "channels_last": "NHWC"}.get(layout, layout)


def _number(value):
    if value is None:
        return "-"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _time(stats, repeats):
    """Median in ms, with the IQR as a share of it, and the sample count when
    the time budget cut it below `repeats`."""
    if stats is None:
        return "-"
    ms = stats.median * 1e3
    text = f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"
    count = f", n={len(stats.samples)}" if len(stats.samples) < repeats else ""
    return f"{text} ({stats.relative_spread * 100:.0f}%{count})"


def _percent(value):
    return "-" if value is None else f"{value:.0f}%" if value >= 1 else f"{value:.1f}%"


def _ratio(value):
    return "-" if value is None else verdict_module.format_ratio(value)


def _columns(header, body):
    """Left-aligned text columns; a row shorter than the header (an error
    message) runs on across the remaining columns."""
    widths = [len(h) for h in header]
    for row in body:
        sized = row if len(row) == len(header) else row[:-1]
        widths = [max(w, len(c)) for w, c in zip(widths, sized)] + widths[len(sized):]
    numeric = set(range(4, len(header)))
    def line(row):
        cells = [c.rjust(w) if i in numeric and len(row) == len(header) else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        if len(row) < len(header):
            cells[-1] = row[-1]
        return "  ".join(cells).rstrip()
    return [line(header), "  ".join("-" * w for w in widths), *[line(row) for row in body]]
