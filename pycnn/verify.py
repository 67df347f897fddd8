"""Checks pycnn against torch's own reference ops: `pycnn.verify(...)` and
`python -m pycnn verify [ops | MODEL ... | models | all]`.

ops: every pycnn op forward and backward on fresh random input, against
torch.nn.functional's op on the same tensors.

A model (a name of pycnn.models, or any nn.Module): the pycnn model and a
torch reference -- torchvision's model where one exists, otherwise the same
module with torch's own layers (pycnn.convert.to_torch) -- hold identical
weights (for a model of the zoo, drawn afresh: see fresh_weights; a module
keeps its own); both run forward and backward on the same fresh random
input and the same random output gradient.  Compared, in total: the output,
the gradient of the input and of every parameter; per layer (pycnn._layers):
its output and the gradient of its output, matched by name through hooks;
and in float32, each layer on pycnn's kernels alone, on the reference's own
input and output gradient (see MODEL_TOLERANCES for why).

Both models run in train mode, so batch norm normalises with the batch's
statistics and its backward is checked too, with dropout switched off (its
masks are random, and it has no arithmetic of pycnn's).

Every comparison reports the largest absolute difference and the relative
one, max|pycnn - torch| / max|torch|, with pass/fail against the tolerance
for the dtype; the exit status is non-zero when any fails.  A parameter's
gradient is measured against the largest gradient among its module's
parameters (weight and bias together), since some are zero but for rounding:
a convolution's bias before batch norm in train mode.
"""
import contextlib
import copy
import dataclasses
import sys
import time

import torch
import torch.nn.functional as TF

from . import functional as F
from ._callable_module import make_callable
from ._layers import named_layers, runs_on_pycnn

# Largest allowed relative difference, |pycnn - torch| / max|torch|, per dtype.
# float32 convolution sums thousands of products in a different order than
# oneDNN/cuDNN; float64 differs only by rounding.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 2e-2, torch.bfloat16: 5e-2}


@dataclasses.dataclass
class Difference:
    """One compared tensor: the largest absolute and relative difference."""
    case: str
    tensor: str
    dtype: torch.dtype
    device: str
    max_abs: float
    max_rel: float
    tolerance: float
    judged: bool = True    # False: reported for information, never a failure

    @property
    def passed(self):
        return not self.judged or self.max_rel <= self.tolerance


def _chunks(t, size=1 << 22):
    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t.reshape(-1).split(size)


def _max_abs(t):
    return max((c.abs().max().item() for c in _chunks(t)), default=0.0)


def _max_abs_difference(a, b):
    """(max|a - b|, max|b|), a few million elements at a time (a VGG's
    classifier gradient has 103 M); max|a - b| is inf when any element is NaN
    or infinite on either side."""
    largest = scale = 0.0
    for x, y in zip(_chunks(a), _chunks(b)):
        chunk = (x - y).abs_().max().item()
        if chunk != chunk:  # NaN
            return float("inf"), _max_abs(b)
        largest, scale = max(largest, chunk), max(scale, y.abs().max().item())
    return largest, scale


def compare(case, tensor, ours, reference, tolerance, device, scale=0.0):
    """The difference of two tensors; `scale`, when larger than max|reference|,
    is the magnitude the difference is measured against instead."""
    if ours.shape != reference.shape:
        return Difference(case, f"{tensor} shape {list(ours.shape)} != {list(reference.shape)}",
                          reference.dtype, device, float("inf"), float("inf"), tolerance)
    max_abs, own_scale = _max_abs_difference(ours, reference)
    scale = max(own_scale, scale)
    max_rel = max_abs / scale if scale > 0 else max_abs
    return Difference(case, tensor, None, device, max_abs, max_rel, tolerance)


def compare_functions(case, ours_fn, torch_fn, inputs, dtype, device, tolerance=None):
    """Runs ours_fn and torch_fn on copies of `inputs` (a dict name -> tensor),
    backpropagates the same random grad_output through both and compares the
    output and the gradient of every input that requires grad."""
    tolerance = TOLERANCES[dtype] if tolerance is None else tolerance
    leaves = [{k: v.detach().clone().requires_grad_(v.requires_grad) for k, v in inputs.items()}
              for _ in range(2)]
    outputs = [fn(**args) for fn, args in zip((ours_fn, torch_fn), leaves)]
    outputs = [o[0] if isinstance(o, tuple) else o for o in outputs]
    rows = [compare(case, "output", outputs[0], outputs[1], tolerance, device)]
    wanted = [k for k, v in inputs.items() if v.requires_grad]
    if wanted:
        grad_output = torch.randn_like(outputs[1])
        grads = [torch.autograd.grad(o, [a[k] for k in wanted], grad_output)
                 for o, a in zip(outputs, leaves)]
        rows += [compare(case, f"grad_{k}", g0, g1, tolerance, device)
                 for k, g0, g1 in zip(wanted, grads[0], grads[1])]
    for row in rows:
        row.dtype = dtype
    return rows


def _op_cases(dtype, device):
    """(case name, pycnn function, torch function, inputs) for every op."""
    def randn(*shape, grad=True):
        return torch.randn(*shape, dtype=dtype, device=device).requires_grad_(grad)

    conv_inputs = lambda: dict(input=randn(4, 6, 17, 19), weight=randn(8, 3, 3, 5), bias=randn(8))
    conv_options = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    # conv2d_relu in float64 only: in float32 a pre-activation within
    # rounding of zero may take either side of the ReLU in pycnn and in
    # torch, and its gradient then differs by a whole term (the tests check
    # float32 against pycnn's own conv2d followed by torch.relu instead).
    fused = [("conv2d_relu", lambda **a: F.conv2d_relu(**a, **conv_options),
              lambda **a: torch.relu(TF.conv2d(**a, **conv_options)), conv_inputs())]
    return [
        ("conv2d", lambda **a: F.conv2d(**a, **conv_options),
         lambda **a: TF.conv2d(**a, **conv_options), conv_inputs()),
        *(fused if dtype == torch.float64 else []),
        ("max_pool2d", lambda **a: F.max_pool2d(**a, kernel_size=3, stride=2, padding=1, ceil_mode=True),
         lambda **a: TF.max_pool2d(**a, kernel_size=3, stride=2, padding=1, ceil_mode=True),
         dict(input=randn(4, 6, 17, 19))),
        ("avg_pool2d", lambda **a: F.avg_pool2d(**a, kernel_size=3, stride=2, padding=1,
                                                 count_include_pad=False),
         lambda **a: TF.avg_pool2d(**a, kernel_size=3, stride=2, padding=1, count_include_pad=False),
         dict(input=randn(4, 6, 17, 19))),
        ("adaptive_avg_pool2d", lambda **a: F.adaptive_avg_pool2d(**a, output_size=(5, 7)),
         lambda **a: TF.adaptive_avg_pool2d(**a, output_size=(5, 7)), dict(input=randn(4, 6, 17, 19))),
        ("adaptive_max_pool2d", lambda **a: F.adaptive_max_pool2d(**a, output_size=(5, 7)),
         lambda **a: TF.adaptive_max_pool2d(**a, output_size=(5, 7)), dict(input=randn(4, 6, 17, 19))),
    ]


def verify_ops(device="cpu", dtypes=(torch.float32, torch.float64), seed=0):
    """Every op, forward and backward, in each dtype: a list of Difference rows."""
    torch.manual_seed(seed)
    rows = []
    with _exact_float32():
        for dtype in dtypes:
            for case, ours, reference, inputs in _op_cases(dtype, device):
                rows += compare_functions(case, ours, reference, inputs, dtype, device)
    return rows


class _exact_float32:
    """TF32 off, so that torch's float32 CUDA reference is true float32."""

    def __enter__(self):
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *exc):
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def format_table(rows, title=None):
    header = ("case", "tensor", "dtype", "device", "max abs diff", "max rel diff", "tolerance", "")
    body = [(r.case, r.tensor, str(r.dtype).replace("torch.", ""), r.device, f"{r.max_abs:.2e}",
             f"{r.max_rel:.2e}", f"{r.tolerance:.0e}", "ok" if r.passed else "FAIL") for r in rows]
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- models

# Largest allowed relative difference of a whole model, per dtype.  float64:
# every output and gradient, through the whole model (measured on the zoo:
# below 1e-10 even for ResNet-152).  float32: the output only -- the forward
# pass is continuous, but batch norm over a few values per channel amplifies
# rounding (measured: up to ~1e-3 on the deep ResNets).  float32 gradients
# through a whole model are reported but not judged: a ReLU or max-pool choice
# that flips at rounding level sends a gradient elsewhere, and any two float32
# implementations differ there by O(1) at single elements -- torch's own
# float32 differs from its float64 as much.  In float32 each layer on pycnn's
# kernels is instead checked in isolation (ISOLATED_TOLERANCES).
MODEL_TOLERANCES = {torch.float64: 1e-9, torch.float32: 1e-2, torch.float16: 1e-1, torch.bfloat16: 2e-1}
# One layer on the reference's own input and output gradient: as for an op.
ISOLATED_TOLERANCES = TOLERANCES
# Dtypes whose gradients and per-layer chain are judged through the whole model.
CHAIN_JUDGED = (torch.float64,)


@dataclasses.dataclass
class ModelReport:
    """The comparison of one model with its torch reference."""
    model: str
    reference: str
    dtype: torch.dtype
    device: str
    input_shape: tuple
    tolerance: float
    output: Difference
    grad_input: Difference
    parameters: list      # Difference per parameter gradient, named by the parameter
    layers: list          # Difference per layer call along the chain: output, output gradient
    isolated: list = dataclasses.field(default_factory=list)  # per pycnn layer call, alone
    seconds: float = 0.0
    notes: list = dataclasses.field(default_factory=list)
    # Wall time of each side's forward and backward (pycnn's model, torch's
    # reference; in float32 including each layer alone), and of building both.
    seconds_pycnn: float = 0.0
    seconds_torch: float = 0.0
    seconds_build: float = 0.0

    @property
    def rows(self):
        return [self.output, self.grad_input] + self.parameters + self.layers + self.isolated

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    def worst(self, rows):
        return max(rows, key=lambda r: r.max_rel, default=None)

    def __str__(self):
        notes = "".join(f"\nnote: {note}" for note in self.notes)
        return format_model_reports([self]) + "\n\n" + format_layers(self) + notes


@contextlib.contextmanager
def _default_dtype(dtype):
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


def _shared_weights(module):
    """module's state_dict for assign=True: parameters shared (the reference
    then holds the same numbers without a copy, and autograd still keeps the
    two models' gradients apart), buffers copied (batch norm updates them)."""
    parameters = {name for name, _ in module.named_parameters()}
    return {k: v if k in parameters else v.clone() for k, v in module.state_dict().items()}


def _torchvision_twin(name, ours, num_classes):
    """torchvision's model `name` holding ours's weights, or None without torchvision."""
    try:
        import torchvision
    except ImportError:
        return None
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None, num_classes=num_classes)
    reference.load_state_dict(_shared_weights(ours), strict=True, assign=True)
    stray = [n for n, t in list(reference.named_parameters()) + list(reference.named_buffers())
             if t.is_meta]
    if stray:
        raise RuntimeError(f"verify: torchvision's {name} has tensors outside its state_dict: {stray}")
    return reference


_PARAMETER_FILLS = {torch._C.TensorBase.uniform_, torch._C.TensorBase.normal_, torch._C.TensorBase.zero_,
                    torch._C.TensorBase.fill_}


class _SkipParameterInit(torch.overrides.TorchFunctionMode):
    """While a model of the zoo is built for checking, its parameters keep
    their uninitialised memory: fresh_weights draws them all in one pass right
    after, and a VGG's own initialisation (two passes over 138 M numbers)
    takes longer than the whole check."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        target = args[0] if args else kwargs.get("tensor", kwargs.get("self"))
        if isinstance(target, torch.nn.Parameter) and \
                (func in _PARAMETER_FILLS or getattr(func, "__module__", None) == "torch.nn.init"):
            return target
        return func(*args, **kwargs)


def fresh_weights(model):
    """Every parameter drawn afresh from the global generator, none zero, so
    every term of every layer counts: weights uniform in +-sqrt(6/fan_in)
    (He's scale: activations keep their size through ReLU layers), vectors
    named weight (batch-norm scales, subsampling coefficients) in [0.5, 1.5],
    other vectors (biases, shifts) in [-0.5, 0.5]."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                bound = (6.0 / p[0].numel()) ** 0.5
                p.uniform_(-bound, bound)
            elif name.rsplit(".", 1)[-1] == "weight":
                p.uniform_(0.5, 1.5)
            else:
                p.uniform_(-0.5, 0.5)
    return model


def build_pair(model, dtype=torch.float64, device="cpu", num_classes=None, input_size=None):
    """(name, pycnn model, torch reference, reference description, (C, H, W))
    with identical weights, in dtype on device."""
    from . import models
    from .convert import convert, to_torch
    if isinstance(model, str):
        spec = models.spec(model)
        num_classes = spec.num_classes if num_classes is None else num_classes
        with _default_dtype(dtype), torch.device(device), _SkipParameterInit():
            ours = spec.build(num_classes=num_classes)
        fresh_weights(ours)
        reference = _torchvision_twin(spec.torchvision, ours, num_classes) if spec.torchvision else None
        description = f"torchvision.models.{spec.torchvision}"
        if reference is None:
            reference = to_torch(copy.deepcopy(ours))
            description = "same model, torch's layers" + (" (no torchvision)" if spec.torchvision else "")
        return model, ours, reference, description, tuple(input_size or spec.check_size)
    if input_size is None:
        raise ValueError("pycnn.verify: input_size (C, H, W) is required to verify a module")
    ours = convert(copy.deepcopy(model)).to(device=device, dtype=dtype)
    reference = to_torch(copy.deepcopy(model)).to(device=device, dtype=dtype)
    return type(model).__name__, ours, reference, "same model, torch's layers", tuple(input_size)


def _prepare(model):
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.eval()


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        return next((v for v in value if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    return None


def _grad_output_for(output, seed):
    # Drawn in float64 and rounded, so every dtype sees the same gradient.
    generator = torch.Generator(device=output.device).manual_seed(seed)
    return torch.randn(output.shape, generator=generator, dtype=torch.float64,
                       device=output.device).to(output.dtype)


def run_and_record(model, x, grad_output_seed, inputs_of=()):
    """Forward and backward of `model` on a copy of x; returns (output,
    grad_input, {parameter: grad}, {layer: [call records]}), a call record
    holding the layer's output, the gradient of its output and, for the
    layers named in inputs_of, its input."""
    records, handles = {}, []

    def recorder(name):
        def hook(module, args, output):
            tensor = _first_tensor(output)
            if tensor is None:
                return
            # Cloned now: an in-place ReLU after this layer would change it.
            entry = {"output": tensor.detach().clone()}
            if name in inputs_of:
                entry["input"] = _first_tensor(args).detach().clone()
            if tensor.requires_grad:
                tensor.register_hook(lambda g: entry.__setitem__("grad_output", g.detach().clone()))
            records.setdefault(name, []).append(entry)
        return hook

    for name, layer in named_layers(model):
        handles.append(layer.register_forward_hook(recorder(name)))
    try:
        x = x.detach().clone().requires_grad_()
        output = model(x)
        parameters = dict(model.named_parameters())
        grads = torch.autograd.grad(output, [x] + list(parameters.values()),
                                    _grad_output_for(output, grad_output_seed), allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    param_grads = {n: torch.zeros_like(p) if g is None else g
                   for (n, p), g in zip(parameters.items(), grads[1:])}
    return output.detach(), grads[0], param_grads, records


def _layer_alone(layer, x, grad_output):
    """A layer's output and the gradients of its input and parameters."""
    x = x.clone().requires_grad_()
    output = _first_tensor(layer(x))
    parameters = dict(layer.named_parameters())
    grads = torch.autograd.grad(output, [x] + list(parameters.values()), grad_output, allow_unused=True)
    return output.detach(), grads[0], {n: torch.zeros_like(p) if g is None else g
                                       for (n, p), g in zip(parameters.items(), grads[1:])}


def _owner(parameter_name):
    return parameter_name.rsplit(".", 1)[0] if "." in parameter_name else ""


def compare_gradients(mine, theirs, label, tolerance, dtype, device, judged=True):
    """A Difference per parameter gradient.  Each is measured against the
    largest reference gradient among its module's parameters: the bias of a
    convolution before batch norm has a gradient that is zero but for
    rounding, so its own scale is noise."""
    measured = {p: _max_abs_difference(g, theirs[p]) for p, g in mine.items()
                if p in theirs and g.shape == theirs[p].shape}
    scales = {}
    for p, (_, own) in measured.items():
        scales[_owner(p)] = max(scales.get(_owner(p), 0.0), own)
    rows = []
    for p in mine:
        if p not in measured:
            why = "missing in reference" if p not in theirs else \
                f"shape {list(mine[p].shape)} != {list(theirs[p].shape)}"
            rows.append(Difference(p, f"{label(p)} ({why})", dtype, device, float("inf"), float("inf"),
                                   tolerance))
            continue
        max_abs, scale = measured[p][0], scales[_owner(p)]
        rows.append(Difference(p, label(p), dtype, device, max_abs, max_abs / scale if scale > 0 else max_abs,
                               tolerance, judged))
    return rows


def compare_models(name, ours, reference, input_shape, dtype, device, tolerance=None, seed=0,
                   description=""):
    """Runs both models on the same input and compares everything; a ModelReport."""
    tolerance = MODEL_TOLERANCES[dtype] if tolerance is None else tolerance
    chain_judged = dtype in CHAIN_JUDGED
    isolate = not chain_judged
    start = time.perf_counter()
    _prepare(ours)
    _prepare(reference)
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(input_shape, generator=generator, dtype=torch.float64, device=device).to(dtype)
    ours_layers = dict(named_layers(ours))
    pycnn_layers = {n for n, m in ours_layers.items() if runs_on_pycnn(m)} if isolate else set()
    timer = {"pycnn": 0.0, "torch": 0.0}
    with _exact_float32():
        clock = time.perf_counter()
        mine = run_and_record(ours, x, seed + 1)
        timer["pycnn"] += time.perf_counter() - clock
        clock = time.perf_counter()
        theirs = run_and_record(reference, x, seed + 1, inputs_of=pycnn_layers)
        timer["torch"] += time.perf_counter() - clock

    def diff(case, tensor, a, b, judged=True, scale=0.0, tol=tolerance):
        row = compare(case, tensor, a, b, tol, device, scale)
        row.dtype, row.judged = dtype, judged
        return row

    def missing(case, what, tol=tolerance):
        return Difference(case, what, dtype, device, float("inf"), float("inf"), tol)

    output = diff(name, "output", mine[0], theirs[0])
    grad_input = diff(name, "grad_input", mine[1], theirs[1], chain_judged)
    parameters = compare_gradients(mine[2], theirs[2], lambda p: "grad", tolerance, dtype, device,
                                   chain_judged)

    layers, isolated, notes = [], [], []
    reference_layers = dict(named_layers(reference))
    alone_checked = {}
    for lname, calls in mine[3].items():
        other = theirs[3].get(lname)
        if other is None:
            notes.append(f"layer {lname} has no counterpart of that name in the reference")
            continue
        if len(other) != len(calls):
            layers.append(missing(lname, f"called {len(calls)} times, reference {len(other)}"))
            continue
        for i, (a, b) in enumerate(zip(calls, other)):
            label = lname if len(calls) == 1 else f"{lname}#{i + 1}"
            layers.append(diff(label, "output", a["output"], b["output"], chain_judged))
            if ("grad_output" in a) != ("grad_output" in b):
                layers.append(missing(label, "grad_output (only one side)"))
            elif "grad_output" in a:
                layers.append(diff(label, "grad_output", a["grad_output"], b["grad_output"], chain_judged))
            if lname in pycnn_layers and "grad_output" in b:
                # A layer alone is checked once per kind, options and input shape:
                # ResNet-152's 36 blocks of layer3 repeat a few convolutions.
                layer = ours_layers[lname]
                kind = (type(layer), layer.extra_repr(), tuple(b["input"].shape))
                if kind in alone_checked:
                    alone_checked[kind].append(label)
                    continue
                alone_checked[kind] = [label]
                isolated += _compare_alone(label, layer, reference_layers[lname], b, diff,
                                           ISOLATED_TOLERANCES[dtype], timer)
    repeats = sum(len(labels) - 1 for labels in alone_checked.values())
    if repeats:
        notes.append(f"{repeats} layer calls not checked alone: same kind, options and input shape as "
                     f"one that was")
    return ModelReport(name, description, dtype, device, tuple(input_shape), tolerance, output, grad_input,
                       parameters, layers, isolated, time.perf_counter() - start, notes,
                       timer["pycnn"], timer["torch"])


def _compare_alone(label, ours, reference, record, diff, tolerance, timer):
    """One layer of each model on the reference's recorded input and output
    gradient: differences of the output and of every gradient."""
    with _exact_float32():
        clock = time.perf_counter()
        mine = _layer_alone(ours, record["input"], record["grad_output"])
        timer["pycnn"] += time.perf_counter() - clock
        clock = time.perf_counter()
        theirs = _layer_alone(reference, record["input"], record["grad_output"])
        timer["torch"] += time.perf_counter() - clock
    rows = [diff(label, "alone: output", mine[0], theirs[0], tol=tolerance),
            diff(label, "alone: grad_input", mine[1], theirs[1], tol=tolerance)]
    rows += compare_gradients(mine[2], theirs[2], lambda p: f"alone: {p}.grad", tolerance, rows[0].dtype,
                              rows[0].device)
    for row in rows[2:]:
        row.case = label
    return rows


def verify_model(model, *, dtype=torch.float64, device="cpu", batch=2, input_size=None, seed=0,
                 tolerance=None, num_classes=None):
    """Compares the pycnn model `model` (a name of pycnn.models or any
    nn.Module) with its torch reference; a ModelReport (print it for the
    tables; .passed says whether every difference is within tolerance).

    input_size: one sample's (C, H, W); for a model name, default: the
    smallest convenient size of the registry (ModelSpec.check_size).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    name, ours, reference, description, size = build_pair(model, dtype, device, num_classes, input_size)
    built = time.perf_counter()
    report = compare_models(name, ours, reference, (batch,) + size, dtype, device, tolerance, seed,
                            description)
    report.seconds, report.seconds_build = time.perf_counter() - start, built - start
    return report


def verify(target, **options):
    """pycnn.verify(target, ...): target is a model name of pycnn.models or
    an nn.Module (see verify_model for the options: dtype, device, batch,
    input_size, seed, tolerance, num_classes) -> ModelReport; or 'ops' ->
    the list of Difference rows of verify_ops (options: device, dtypes, seed)."""
    if isinstance(target, str) and target == "ops":
        return verify_ops(**options)
    return verify_model(target, **options)


def _pair_text(row):
    return f"{row.max_abs:.1e} / {row.max_rel:.1e}" + ("" if row.judged else " *")


def _verdict(row):
    return "ok" if not row.judged or row.passed else "FAIL"


def format_model_reports(reports, title=None):
    """One line per model: the totals, the worst parameter gradient and the
    worst judged layer row."""
    header = ("model", "reference", "dtype", "input", "output abs / rel", "grad input abs / rel",
              "param grads abs / rel (worst)", "worst layer rel (judged)", "tol", "time", "pycnn/torch/build",
              "")
    body = []
    for r in reports:
        worst_param = r.worst(r.parameters)
        worst_layer = r.worst([row for row in r.layers + r.isolated if row.judged])
        n, c, h, w = r.input_shape
        body.append((r.model, r.reference, str(r.dtype).replace("torch.", ""), f"{n}x{c}@{h}x{w}",
                     _pair_text(r.output), _pair_text(r.grad_input),
                     f"{_pair_text(worst_param)} {worst_param.case}" if worst_param else "-",
                     f"{worst_layer.max_rel:.1e} {worst_layer.case} {worst_layer.tensor}" if worst_layer else "-",
                     f"{r.tolerance:.0e}", f"{r.seconds:.1f}s",
                     f"{r.seconds_pycnn:.1f}/{r.seconds_torch:.1f}/{r.seconds_build:.1f}",
                     "ok" if r.passed else "FAIL"))
    table = _table(header, body, title)
    if any(not r.grad_input.judged for r in reports):
        table += ("\n* not judged: float32 gradients through a whole model (see MODEL_TOLERANCES); "
                  "float32 rows judge the output and every pycnn layer alone "
                  f"(tolerance {ISOLATED_TOLERANCES[torch.float32]:.0e})")
    return table


def format_layers(report, only_failures=False):
    """Per layer call: its output and output gradient along the chain, then
    (in float32) the layer alone, then (on its first call) its parameters'
    gradients through the whole model."""
    by_layer = {}
    layer_names = {r.case.split("#")[0] for r in report.layers}
    for p in report.parameters:
        owner = max((n for n in layer_names if p.case.startswith(n + ".")), key=len, default=None)
        by_layer.setdefault(owner, []).append(p)
    alone = {}
    for row in report.isolated:
        alone.setdefault(row.case, []).append(row)
    header = ("layer", "tensor", "max abs diff", "max rel diff", "")
    body, shown = [], set()

    def add(name, tensor, row):
        if only_failures and row.passed:
            return
        body.append((name, tensor, f"{row.max_abs:.2e}", f"{row.max_rel:.2e}",
                     "FAIL" if not row.passed else ("ok" if row.judged else "-")))

    for row in report.layers:
        layer = row.case.split("#")[0]
        name = row.case if row.tensor == "output" or only_failures else ""
        add(name, row.tensor, row)
        if row.tensor == "grad_output" or (row.tensor == "output" and not any(
                r.case == row.case and r.tensor == "grad_output" for r in report.layers)):
            for r in alone.pop(row.case, []):
                add(r.case if only_failures else "", r.tensor, r)
            if layer not in shown:
                shown.add(layer)
                for p in by_layer.get(layer, []):
                    add(p.case if only_failures else "", f"{p.case[len(layer) + 1:]}.grad", p)
    for p in by_layer.get(None, []):
        add(p.case, "grad", p)
    dtype = str(report.dtype).replace("torch.", "")
    title = f"{report.model} ({dtype}, {report.device}) per layer; '-': reported, not judged"
    return _table(header, body, title)


def _table(header, body, title=None):
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line

def add_arguments(parser):
    parser.add_argument("targets", nargs="*", default=["ops"], metavar="TARGET",
                        help="'ops' (default), model names of pycnn.models, 'models' (every model) "
                             "or 'all' (ops and every model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"],
                        help="dtype to check (repeatable; default: both)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=2, help="models: batch size (default 2)")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="models: one sample's size (default: each model's check size)")
    parser.add_argument("--per-layer", action="store_true",
                        help="models: print every layer's differences (failing layers are always shown)")


def report(rows, title):
    """Prints the table and a one-line verdict; returns the exit status."""
    print(format_table(rows, title))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} comparisons within tolerance")
    return 1 if failed else 0


def _expand_targets(targets):
    from . import models
    expanded = []
    for target in targets:
        if target == "all":
            expanded += ["ops"] + models.names()
        elif target == "models":
            expanded += models.names()
        elif target == "ops" or target in models.MODELS:
            expanded.append(target)
        else:
            raise ValueError(f"unknown target {target!r}; choose from ops, models, all, "
                             f"{', '.join(models.names())}")
    return list(dict.fromkeys(expanded))


def run(args):
    if args.device == "cuda" and not torch.cuda.is_available():
        print("verify: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    try:
        targets = _expand_targets(args.targets)
    except ValueError as error:
        print(f"verify: {error}", file=sys.stderr)
        return 2
    dtypes = [getattr(torch, d) for d in (args.dtype or ["float32", "float64"])]
    start = time.perf_counter()
    status = 0
    if "ops" in targets:
        rows = verify_ops(args.device, dtypes, args.seed)
        status |= report(rows, f"pycnn ops vs torch.nn.functional on {args.device}")
    model_names = [t for t in targets if t != "ops"]
    if model_names:
        if "ops" in targets:
            print()
        print(f"pycnn models vs torch on {args.device}: train mode (batch-norm statistics of the batch), "
              f"dropout off; abs = max|pycnn - torch|, rel = abs / max|torch|")
        reports = []
        for name in model_names:
            for dtype in dtypes:
                r = verify_model(name, dtype=dtype, device=args.device, batch=args.batch,
                                 input_size=args.input_size, seed=args.seed)
                reports.append(r)
                print(f"verify: {name} {str(dtype).replace('torch.', '')} {'ok' if r.passed else 'FAIL'} "
                      f"in {r.seconds:.1f} s", file=sys.stderr, flush=True)
        print(format_model_reports(reports))
        for r in reports:
            if args.per_layer or not r.passed:
                print()
                print(format_layers(r, only_failures=not args.per_layer))
                for note in r.notes:
                    print(f"note: {note}")
        failed = [r for r in reports if not r.passed]
        print(f"\n{len(reports) - len(failed)}/{len(reports)} model checks within tolerance")
        status |= 1 if failed else 0
    print(f"verify: {time.perf_counter() - start:.1f} s in all")
    return status


make_callable(__name__, verify)
