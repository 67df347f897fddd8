"""Runs the cases: builds each contender's calls, checks that pycnn and torch
agree, and times them side by side."""
import contextlib
import dataclasses
import gc

import torch

from . import models, timing
from .cases import ConvCase, PoolCase, TrainCase
from ..verify import TOLERANCES


@dataclasses.dataclass
class Result:
    """One case, layout and pass: both contenders' timings and the work done."""
    case: object
    layout: str          # "nchw" or "channels_last"
    pass_: str           # "forward", "backward", "both" or "step"
    work: float          # flops (conv), bytes (pool) or images (train step) per call
    pycnn: timing.Stats = None
    torch: timing.Stats = None
    max_rel_diff: float = None  # forward output, |pycnn - torch| / max|torch|
    agrees: bool = None
    error: str = None
    note: str = None

    @property
    def group(self):
        return self.case.group

    @property
    def ratio(self):
        """torch time / pycnn time: above 1, pycnn is faster."""
        if self.pycnn is None or self.torch is None or self.pycnn.median <= 0:
            return None
        return self.torch.median / self.pycnn.median

    def rate(self, side):
        """Work per second of one contender: flop/s, B/s or images/s."""
        stats = getattr(self, side)
        return None if stats is None or stats.median <= 0 else self.work / stats.median


@dataclasses.dataclass
class Settings:
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    repeats: int = 10
    warmup: int = 2
    min_sample_s: float = 0.0
    budget_s: float = None    # seconds of timed rounds per case and pass, before cutting repeats
    inference: bool = False   # forward pass under torch.no_grad (no autograd graph)
    check: bool = True
    seed: int = 0
    tf32: bool = False        # torch may round float32 convolutions to TF32 (CUDA)

    def tolerance(self, dtype=None):
        """Largest relative difference of a layer's output that still agrees."""
        dtype = self.dtype if dtype is None else dtype
        if dtype == torch.float32 and self.tf32 and torch.device(self.device).type == "cuda":
            # TF32 rounds the operands to float16's 10-bit mantissa.
            return TOLERANCES[torch.float16]
        return TOLERANCES.get(dtype, 1e-4)


def _max_rel_diff(ours, reference):
    ours, reference = ours.detach().double(), reference.detach().double()
    if ours.shape != reference.shape:
        return float("inf")
    scale = reference.abs().max().item() if reference.numel() else 0.0
    diff = (ours - reference).abs().max().item() if reference.numel() else 0.0
    if diff != diff:  # NaN in either output
        return float("inf")
    return diff / scale if scale > 0 else diff


def _layer_calls(fn, leaves, pass_, inference):
    """The call one timing sample makes for `pass_` of a layer function."""
    if pass_ == "forward":
        if inference:
            def forward():
                with torch.no_grad():
                    return fn(*leaves)
            return forward
        return lambda: fn(*leaves)
    if pass_ == "backward":
        # One forward graph, kept, so that each sample times backward alone.
        output = fn(*leaves)
        grad = torch.randn_like(output)
        return lambda: torch.autograd.grad(output, leaves, grad, retain_graph=True)
    grad = torch.randn_like(fn(*leaves).detach())
    return lambda: torch.autograd.grad(fn(*leaves), leaves, grad)


def _error_text(error):
    text = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    return text[:200]


def run_layer(case, layout, passes, settings, on_pass=None):
    """Results of one conv or pooling case in one layout, one per pass."""
    results = []
    channels_last = layout == "channels_last"
    try:
        torch.manual_seed(settings.seed)
        leaves, ours, theirs = case.make(settings.device, settings.dtype, channels_last)
        agrees = max_rel = None
        if settings.check:
            with torch.no_grad():
                max_rel = _max_rel_diff(ours(*leaves), theirs(*leaves))
            agrees = max_rel <= settings.tolerance()
    except Exception as error:  # a case that cannot even start fails alone, not the suite
        note = _error_text(error)
        for pass_ in passes:
            results.append(Result(case, layout, pass_,
                                  case.work(pass_, settings.dtype, settings.inference),
                                  error=note))
            if on_pass:
                on_pass()
        return results
    for pass_ in passes:
        result = Result(case, layout, pass_, case.work(pass_, settings.dtype, settings.inference),
                        max_rel_diff=max_rel, agrees=agrees)
        calls = None
        try:
            calls = {"pycnn": _layer_calls(ours, leaves, pass_, settings.inference),
                     "torch": _layer_calls(theirs, leaves, pass_, settings.inference)}
            stats = timing.compare(calls, settings.device, settings.warmup, settings.repeats,
                                   settings.min_sample_s, settings.budget_s)
            result.pycnn, result.torch = stats["pycnn"], stats["torch"]
        except Exception as error:
            result.error = _error_text(error)
        results.append(result)
        if on_pass:
            on_pass()
        del calls
    del leaves
    _release(settings.device)
    return results


class _TrainStep:
    """forward, cross-entropy loss, backward and an SGD step of one model."""

    def __init__(self, model, images, labels, amp, device):
        self.model, self.images, self.labels = model, images, labels
        self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        self.amp = amp
        self.device_type = torch.device(device).type
        self.scaler = torch.amp.GradScaler(self.device_type) if amp == torch.float16 else None

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp)

    def logits(self):
        with self._autocast():
            return self.model(self.images)

    def __call__(self):
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = torch.nn.functional.cross_entropy(self.model(self.images), self.labels)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()


def _conv_dtypes(step):
    """The dtypes the model's conv layers compute in under the step's autocast."""
    seen = set()
    handles = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
               for m in step.model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            step.logits()
    finally:
        for handle in handles:
            handle.remove()
    return {str(d).replace("torch.", "") for d in seen}


def _train_steps(case, layout, settings):
    """(pycnn step, torch step, forward difference, note) for a TrainCase."""
    device, dtype = settings.device, settings.dtype
    torch.manual_seed(settings.seed)
    reference = models.torch_layers_model(case.model, case.classes)
    reference = reference.to(device=device, dtype=dtype).train()
    channels_last = case.channels_last or layout == "channels_last"
    ours = models.pycnn_layers_model(reference)
    left = models.torch_layers_left(ours)
    images = torch.randn(case.batch, *case.image, device=device, dtype=dtype)
    if channels_last:
        reference = reference.to(memory_format=torch.channels_last)
        ours = ours.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, case.classes, (case.batch,), device=device)
    amp = getattr(torch, case.amp) if case.amp and torch.device(device).type == "cuda" else None
    steps = {"pycnn": _TrainStep(ours, images, labels, amp, device),
             "torch": _TrainStep(reference, images, labels, amp, device)}
    max_rel = None
    note = f"{left} conv/pool layers stayed torch's (pycnn.convert declined them)" if left else None
    if settings.check:
        # Dropout draws differ between the two models: compare in eval mode.
        for step in steps.values():
            step.model.eval()
        with torch.no_grad():
            max_rel = _max_rel_diff(steps["pycnn"].logits(), steps["torch"].logits())
        for step in steps.values():
            step.model.train()
    if amp is not None:
        ours_dtypes, theirs_dtypes = _conv_dtypes(steps["pycnn"]), _conv_dtypes(steps["torch"])
        if ours_dtypes != theirs_dtypes:
            mismatch = (f"under autocast pycnn's convs ran in {sorted(ours_dtypes)}, "
                        f"torch's in {sorted(theirs_dtypes)}")
            note = f"{note}; {mismatch}" if note else mismatch
    return steps, max_rel, note


def run_train(case, layout, settings):
    result = Result(case, layout, "step", case.work("step", settings.dtype))
    try:
        steps, result.max_rel_diff, result.note = _train_steps(case, layout, settings)
        if result.max_rel_diff is not None:
            # A deep model compounds rounding: ten times a single layer's tolerance.
            amp = case.amp and torch.device(settings.device).type == "cuda"
            tolerance = 10 * settings.tolerance(getattr(torch, case.amp) if amp else None)
            result.agrees = result.max_rel_diff <= tolerance
        stats = timing.compare(steps, settings.device, settings.warmup, settings.repeats,
                               settings.min_sample_s, settings.budget_s)
        result.pycnn, result.torch = stats["pycnn"], stats["torch"]
    except Exception as error:
        result.error = _error_text(error)
        if settings.device != "cpu" and "out of memory" in str(error):
            result.note = "out of memory: lower the batch"
    _release(settings.device)
    return [result]


def _release(device):
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def plan(cases, layouts_for, passes):
    """(case, layout, passes of this case) for every unit of work, in order."""
    units = []
    for case in cases:
        case_passes = [p for p in case.passes if p in passes or case.group == "train"]
        if not case_passes:
            continue
        for layout in layouts_for(case):
            units.append((case, layout, case_passes))
    return units


def run_units(units, settings, progress=None):
    """Runs every unit; `progress` (a tqdm bar or None) advances per pass."""
    results = []
    for case, layout, passes in units:
        if progress is not None:
            progress.set_postfix_str(f"{case.name} [{layout}]", refresh=False)
        if isinstance(case, TrainCase):
            results += run_train(case, layout, settings)
            if progress is not None:
                progress.update(1)
        elif isinstance(case, (ConvCase, PoolCase)):
            results += run_layer(case, layout, passes, settings,
                                 on_pass=(lambda: progress.update(1)) if progress is not None else None)
        else:
            raise TypeError(f"pycnn bench: unknown case type {type(case).__name__}")
    return results

