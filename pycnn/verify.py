"""Checks pycnn against torch's own reference ops: `pycnn.verify(...)` and
`python -m pycnn verify [ops | MODEL ... | models | all]`.

ops: every pycnn op forward and backward on fresh random input, against
torch.nn.functional's op on the same tensors.

A model (a name of pycnn.models, or any nn.Module): the pycnn model and a
torch reference -- torchvision's model where one exists, otherwise the same
module with torch's own layers (pycnn.convert.to_torch) -- hold identical
weights; both run forward and backward on the same fresh random input and
the same random output gradient.  Compared, in total: the output, the
gradient of the input and of every parameter; per layer (pycnn._layers):
its output and the gradient of its output, matched by name through hooks.

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
from ._layers import named_layers

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

    @property
    def passed(self):
        return self.max_rel <= self.tolerance


def compare(case, tensor, ours, reference, tolerance, device, scale=0.0):
    """The difference of two tensors; `scale`, when larger than max|reference|,
    is the magnitude the difference is measured against instead."""
    ours, reference = ours.detach().double(), reference.detach().double()
    if ours.shape != reference.shape:
        return Difference(case, f"{tensor} shape {list(ours.shape)} != {list(reference.shape)}",
                          reference.dtype, device, float("inf"), float("inf"), tolerance)
    max_abs = (ours - reference).abs().max().item() if ours.numel() else 0.0
    scale = max(reference.abs().max().item() if reference.numel() else 0.0, scale)
    max_rel = max_abs / scale if scale > 0 else max_abs
    if not torch.isfinite(ours).all() and not torch.equal(ours.isnan(), reference.isnan()):
        max_abs = max_rel = float("inf")
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
    return [
        ("conv2d", lambda **a: F.conv2d(**a, **conv_options),
         lambda **a: TF.conv2d(**a, **conv_options), conv_inputs()),
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

# Largest allowed relative difference for whole models, per dtype.  A model
# chains dozens to hundreds of ops, each rounding in its own summation order,
# and batch norm divides by batch statistics that amplify the differences of
# small activations: measured on the zoo (see docs or the closing note of the
# models' issue), float64 stays below 1e-12 and float32 below 1e-4.
MODEL_TOLERANCES = {torch.float64: 1e-9, torch.float32: 1e-3, torch.float16: 5e-2, torch.bfloat16: 1e-1}


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
    layers: list          # Difference per layer call: its output and the gradient of its output
    seconds: float = 0.0
    notes: list = dataclasses.field(default_factory=list)

    @property
    def rows(self):
        return [self.output, self.grad_input] + self.parameters + self.layers

    @property
    def passed(self):
        return all(r.passed for r in self.rows)

    def worst(self, rows):
        return max(rows, key=lambda r: r.max_rel, default=None)

    def __str__(self):
        return format_model_reports([self]) + "\n\n" + format_layers(self)


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


def build_pair(model, dtype=torch.float64, device="cpu", num_classes=None, input_size=None):
    """(name, pycnn model, torch reference, reference description, (C, H, W))
    with identical weights, in dtype on device."""
    from . import models
    from .convert import convert, to_torch
    if isinstance(model, str):
        spec = models.spec(model)
        num_classes = spec.num_classes if num_classes is None else num_classes
        with _default_dtype(dtype), torch.device(device):
            ours = spec.build(num_classes=num_classes)
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


def run_and_record(model, x, grad_output_seed):
    """Forward and backward of `model` on a copy of x; returns
    (output, grad_input, {parameter: grad}, {layer name: [{'output', 'grad_output'}, ...]})."""
    records, handles = {}, []

    def recorder(name):
        def hook(module, input, output):
            tensor = _first_tensor(output)
            if tensor is None:
                return
            # Cloned now: an in-place ReLU after this layer would change it.
            entry = {"output": tensor.detach().clone()}
            if tensor.requires_grad:
                tensor.register_hook(lambda g: entry.__setitem__("grad_output", g.detach().clone()))
            records.setdefault(name, []).append(entry)
        return hook

    for name, layer in named_layers(model):
        handles.append(layer.register_forward_hook(recorder(name)))
    try:
        x = x.detach().clone().requires_grad_()
        output = model(x)
        generator = torch.Generator(device=output.device).manual_seed(grad_output_seed)
        grad_output = torch.randn(output.shape, generator=generator, dtype=output.dtype, device=output.device)
        parameters = dict(model.named_parameters())
        grads = torch.autograd.grad(output, [x] + list(parameters.values()), grad_output, allow_unused=True)
    finally:
        for handle in handles:
            handle.remove()
    param_grads = {n: torch.zeros_like(p) if g is None else g
                   for (n, p), g in zip(parameters.items(), grads[1:])}
    return output.detach(), grads[0], param_grads, records


def compare_models(name, ours, reference, input_shape, dtype, device, tolerance=None, seed=0,
                   description=""):
    """Runs both models on the same input and compares everything; a ModelReport."""
    tolerance = MODEL_TOLERANCES[dtype] if tolerance is None else tolerance
    start = time.perf_counter()
    _prepare(ours)
    _prepare(reference)
    generator = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(input_shape, generator=generator, dtype=dtype, device=device)
    with _exact_float32():
        mine = run_and_record(ours, x, seed + 1)
        theirs = run_and_record(reference, x, seed + 1)

    def diff(case, tensor, a, b, scale=0.0):
        row = compare(case, tensor, a, b, tolerance, device, scale)
        row.dtype = dtype
        return row

    output = diff(name, "output", mine[0], theirs[0])
    grad_input = diff(name, "grad_input", mine[1], theirs[1])
    # A parameter's gradient is measured against the largest gradient of its
    # layer's parameters: the bias of a convolution followed by batch norm
    # has a gradient that is zero but for rounding, so its own scale is noise.
    layer_scale = {}
    for pname, grad in theirs[2].items():
        owner = pname.rsplit(".", 1)[0]
        layer_scale[owner] = max(layer_scale.get(owner, 0.0), grad.abs().max().item() if grad.numel() else 0.0)
    parameters = []
    for pname, grad in mine[2].items():
        if pname in theirs[2]:
            parameters.append(diff(pname, "grad", grad, theirs[2][pname], layer_scale[pname.rsplit(".", 1)[0]]))
        else:
            parameters.append(Difference(pname, "grad (missing in reference)", dtype, device,
                                         float("inf"), float("inf"), tolerance))
    layers, notes = [], []
    for lname, calls in mine[3].items():
        other = theirs[3].get(lname)
        if other is None:
            notes.append(f"layer {lname} has no counterpart of that name in the reference")
            continue
        if len(other) != len(calls):
            layers.append(Difference(lname, f"called {len(calls)} times, reference {len(other)}", dtype,
                                     device, float("inf"), float("inf"), tolerance))
            continue
        for i, (a, b) in enumerate(zip(calls, other)):
            label = lname if len(calls) == 1 else f"{lname}#{i + 1}"
            layers.append(diff(label, "output", a["output"], b["output"]))
            if "grad_output" in a or "grad_output" in b:
                if "grad_output" in a and "grad_output" in b:
                    layers.append(diff(label, "grad_output", a["grad_output"], b["grad_output"]))
                else:
                    layers.append(Difference(label, "grad_output (only one side)", dtype, device,
                                             float("inf"), float("inf"), tolerance))
    return ModelReport(name, description, dtype, device, tuple(input_shape), tolerance, output, grad_input,
                       parameters, layers, time.perf_counter() - start, notes)


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
    report = compare_models(name, ours, reference, (batch,) + size, dtype, device, tolerance, seed,
                            description)
    report.seconds = time.perf_counter() - start
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
    return f"{row.max_abs:.1e} / {row.max_rel:.1e}"


def format_model_reports(reports, title=None):
    """One line per model: totals and the worst layer."""
    header = ("model", "reference", "dtype", "input", "output abs / rel", "grad input abs / rel",
              "param grads abs / rel (worst)", "worst layer (rel)", "tol", "time", "")
    body = []
    for r in reports:
        worst_param = r.worst(r.parameters)
        worst_layer = r.worst(r.layers)
        n, c, h, w = r.input_shape
        body.append((r.model, r.reference, str(r.dtype).replace("torch.", ""), f"{n}x{c}@{h}x{w}",
                     _pair_text(r.output), _pair_text(r.grad_input),
                     f"{_pair_text(worst_param)} {worst_param.case}" if worst_param else "-",
                     f"{worst_layer.case} {worst_layer.tensor} {worst_layer.max_rel:.1e}" if worst_layer else "-",
                     f"{r.tolerance:.0e}", f"{r.seconds:.1f}s", "ok" if r.passed else "FAIL"))
    return _table(header, body, title)


def format_layers(report, only_failures=False):
    """Per layer call: its output and output-gradient differences, then (on
    its first call) each of the layer's parameter gradients."""
    by_layer = {}
    for p in report.parameters:
        owner = next((r.case.split("#")[0] for r in report.layers
                      if p.case.startswith(r.case.split("#")[0] + ".")), None)
        by_layer.setdefault(owner, []).append(p)
    header = ("layer", "tensor", "max abs diff", "max rel diff", "")
    body, shown = [], set()
    for row in report.layers:
        layer = row.case.split("#")[0]
        rows = [(row.tensor, row)]
        if row.tensor == "grad_output" and layer not in shown:
            shown.add(layer)
            rows += [(f"{p.case[len(layer) + 1:]}.grad", p) for p in by_layer.get(layer, [])]
        for tensor, r in rows:
            if only_failures and r.passed:
                continue
            name = row.case if row.tensor == "output" or only_failures else ""
            body.append((name, tensor, f"{r.max_abs:.2e}", f"{r.max_rel:.2e}", "ok" if r.passed else "FAIL"))
    for p in by_layer.get(None, []):
        if not (only_failures and p.passed):
            body.append((p.case, "grad", f"{p.max_abs:.2e}", f"{p.max_rel:.2e}", "ok" if p.passed else "FAIL"))
    title = f"{report.model} ({str(report.dtype).replace('torch.', '')}, {report.device}) per layer, " \
            f"tolerance {report.tolerance:.0e}"
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
        failed = [r for r in reports if not r.passed]
        print(f"\n{len(reports) - len(failed)}/{len(reports)} model checks within tolerance")
        status |= 1 if failed else 0
    print(f"verify: {time.perf_counter() - start:.1f} s in all")
    return status


make_callable(__name__, verify)
