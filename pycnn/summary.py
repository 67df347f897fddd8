"""A model's layers in a table: `pycnn.summary(model, input_size)` and
`python -m pycnn summary MODEL`.

One row per layer call (pycnn._layers decides what a layer is), in the order
the forward pass runs them: name, type, input and output shape of one sample
(C@HxW for images, F for vectors; the batch is in the heading), kernel,
stride and padding, parameters and multiply-adds; then the totals.

The forward pass runs on the meta device -- shapes only, no arithmetic, so a
ResNet-152 at 224x224 takes a moment on any machine -- and falls back to the
model's own device (with random input, under no_grad, in eval mode) when some
operation of the model has no meta implementation.

Multiply-adds count the products with weights: a convolution's
N*K*Ho*Wo*(C/groups)*R*S, a linear layer's rows*in*out, and what a layer's
own multiply_adds(input, output) method reports (LeNet-5's trainable
subsampling and RBF output).  Bias additions, normalisation, activations and
pooling count nothing.  This is the convention of the published figures
(ResNet-34: 3.6 G at 224x224; torchvision's "GFLOPS" are these counts).
"""
import dataclasses
import sys

import torch
from torch import nn

from ._callable_module import make_callable
from ._layers import named_layers, runs_on_pycnn

__all__ = ["summary", "Summary", "LayerRow"]


@dataclasses.dataclass
class LayerRow:
    name: str
    type: str
    input_shape: str
    output_shape: str
    kernel: str
    stride: str
    padding: str
    params: int            # parameters of the layer (counted on its first call)
    shared: bool           # a repeated call of a layer with parameters
    multiply_adds: int
    pycnn: bool            # runs on pycnn's kernels


@dataclasses.dataclass
class Summary:
    title: str
    input_size: tuple
    rows: list
    total_params: int
    trainable_params: int
    total_multiply_adds: int
    ran_on: str

    def row(self, name):
        return next(r for r in self.rows if r.name == name)

    def __str__(self):
        return format_summary(self)


def _shape_text(value):
    """One sample's shape: C@HxW for an image batch, F for a batch of vectors."""
    if isinstance(value, torch.Tensor):
        shape = list(value.shape[1:])
        if len(shape) == 3:
            return f"{shape[0]}@{shape[1]}x{shape[2]}"
        return "x".join(map(str, shape)) if shape else "scalar"
    if isinstance(value, (tuple, list)):
        return ", ".join(_shape_text(v) for v in value if isinstance(v, (torch.Tensor, tuple, list)))
    return ""


def _option_text(module, attribute):
    value = getattr(module, attribute, None)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return str(value[0]) if len(set(value)) == 1 else "x".join(map(str, value))
    return str(value)


def _kernel_text(module):
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        return "adaptive"
    kernel = getattr(module, "kernel_size", None)
    if kernel is None:
        return ""
    kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return "x".join(map(str, kernel))


def _own_multiply_adds(module, input, output):
    if hasattr(module, "multiply_adds"):
        return int(module.multiply_adds(input[0] if input else None, output))
    if isinstance(module, nn.Conv2d):
        return output.numel() * (module.in_channels // module.groups) * module.weight[0, 0].numel()
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


class _Recorder:
    """Forward hooks that fill the rows while the model runs once."""

    def __init__(self, model):
        self.rows, self.open_rows, self.handles, self.seen = [], [], [], set()
        layers = dict(named_layers(model))
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) or hasattr(module, "multiply_adds"):
                self.handles.append(module.register_forward_hook(self.count))
        for name, module in layers.items():
            self.handles.append(module.register_forward_pre_hook(self.opener(name)))
            self.handles.append(module.register_forward_hook(self.closer))

    def opener(self, name):
        def open_row(module, input):
            first_call = id(module) not in self.seen
            self.seen.add(id(module))
            params = sum(p.numel() for p in module.parameters())
            kernel = _kernel_text(module)
            windowed = kernel not in ("", "adaptive")
            row = LayerRow(name, type(module).__name__, _shape_text(input), "", kernel,
                           _option_text(module, "stride") if windowed else "",
                           _option_text(module, "padding") if windowed else "",
                           params if first_call else 0, params > 0 and not first_call, 0,
                           runs_on_pycnn(module))
            self.rows.append(row)
            self.open_rows.append(row)
        return open_row

    def count(self, module, input, output):
        if self.open_rows:
            self.open_rows[-1].multiply_adds += _own_multiply_adds(module, input, output)

    def closer(self, module, input, output):
        row = self.open_rows.pop()
        row.output_shape = _shape_text(output)

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _run(model, x, on_meta):
    if on_meta:
        tensors = {name: torch.empty_like(t, device="meta")
                   for name, t in list(model.named_parameters(remove_duplicate=False)) +
                   list(model.named_buffers(remove_duplicate=False))}
        return torch.func.functional_call(model, tensors, (x.to("meta"),), tie_weights=True, strict=False)
    return model(x)


def summary(model, input_size=None, *, dtype=torch.float32, num_classes=None):
    """The layer table of `model` (an nn.Module, or a name of pycnn.models)
    for one input of `input_size`: (C, H, W) for a batch of one, or
    (N, C, H, W).  For a model name, input_size defaults to the size the
    model was designed for.  Returns a Summary; print it for the table."""
    title = type(model).__name__
    if isinstance(model, str):
        from . import models
        spec = models.spec(model)
        title = model
        input_size = spec.input_size if input_size is None else input_size
        with torch.device("meta"):
            model = spec.build(**({} if num_classes is None else {"num_classes": num_classes}))
    if input_size is None:
        raise ValueError("pycnn.summary: input_size is required for a module, e.g. (3, 224, 224)")
    input_size = tuple(int(s) for s in input_size)
    if len(input_size) == 3:
        input_size = (1,) + input_size
    if len(input_size) != 4:
        raise ValueError(f"pycnn.summary: input_size must be (C, H, W) or (N, C, H, W), "
                         f"got input_size={input_size}")
    tensors = list(model.parameters()) + list(model.buffers())
    device = tensors[0].device if tensors else torch.device("cpu")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    recorder = _Recorder(model)
    try:
        with torch.no_grad():
            try:
                _run(model, torch.empty(input_size, dtype=dtype, device="meta"), True)
                ran_on = "meta"
            except Exception:
                if device.type == "meta":
                    raise
                recorder.rows.clear(), recorder.open_rows.clear(), recorder.seen.clear()
                _run(model, torch.randn(input_size, dtype=dtype, device=device), False)
                ran_on = str(device)
    finally:
        recorder.remove()
        for m, training in modes.items():
            m.train(training)
    unique = {id(p): p for p in model.parameters()}.values()
    return Summary(title, input_size, recorder.rows, sum(p.numel() for p in unique),
                   sum(p.numel() for p in unique if p.requires_grad),
                   sum(r.multiply_adds for r in recorder.rows), ran_on)


def _count_text(n):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return str(n)


def format_summary(s: Summary) -> str:
    n, c, h, w = s.input_size
    header = ("layer", "type", "input", "output", "kernel", "stride", "pad", "params", "mult-adds")
    body = [(r.name, r.type + ("*" if r.pycnn else ""), r.input_shape, r.output_shape, r.kernel, r.stride,
             r.padding, "(shared)" if r.shared else f"{r.params:,}", f"{r.multiply_adds:,}")
            for r in s.rows]
    right = {7, 8}
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.rjust(wd) if i in right else c.ljust(wd)
                         for i, (c, wd) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(["-" * wd for wd in widths]))
    lines = [f"{s.title}: input {c}@{h}x{w}, batch {n}", rule, line(header), rule]
    lines += [line(cells) for cells in body]
    lines.append(rule)
    in_rows = sum(r.params for r in s.rows)
    lines.append(f"parameters      {s.total_params:>15,}  ({s.trainable_params:,} trainable)")
    if in_rows != s.total_params:
        lines.append(f"                 ({s.total_params - in_rows:,} held outside the layers listed)")
    lines.append(f"multiply-adds   {s.total_multiply_adds:>15,}  ({_count_text(s.total_multiply_adds)}, "
                 f"batch {n})")
    lines.append("* runs on pycnn's kernels")
    return "\n".join(lines)


def add_arguments(parser):
    parser.add_argument("model", help="a model of pycnn.models (see `python -m pycnn summary --list`)",
                        nargs="?")
    parser.add_argument("--input-size", type=int, nargs=3, metavar=("C", "H", "W"),
                        help="one sample's size (default: the size the model was designed for)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    parser.add_argument("--num-classes", type=int, help="classes of the output layer")
    parser.add_argument("--list", action="store_true", help="list the models and exit")


def run(args):
    from . import models
    if args.list or not args.model:
        for name in models.names():
            spec = models.spec(name)
            print(f"{name:16s} input {spec.input_size[0]}@{spec.input_size[1]}x{spec.input_size[2]}")
        return 0 if args.list else 2
    if args.model not in models.MODELS:
        print(f"summary: unknown model {args.model!r}; choose from {', '.join(models.names())}",
              file=sys.stderr)
        return 2
    size = tuple(args.input_size) if args.input_size else models.spec(args.model).input_size
    print(summary(args.model, (args.batch,) + size, num_classes=args.num_classes))
    return 0


make_callable(__name__, summary)
