"""Checks pycnn against torch's own reference ops.

`python -m pycnn verify ops` runs every pycnn op forward and backward on
fresh random input, runs torch.nn.functional's op on the same tensors, and
reports the largest absolute and relative difference of the output and of
every gradient, with pass/fail against the tolerance for the dtype.
"""
import dataclasses
import sys

import torch
import torch.nn.functional as TF

from . import functional as F

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


def compare(case, tensor, ours, reference, tolerance, device):
    ours, reference = ours.detach().double(), reference.detach().double()
    if ours.shape != reference.shape:
        return Difference(case, f"{tensor} shape {list(ours.shape)} != {list(reference.shape)}",
                          reference.dtype, device, float("inf"), float("inf"), tolerance)
    max_abs = (ours - reference).abs().max().item() if ours.numel() else 0.0
    scale = reference.abs().max().item() if reference.numel() else 0.0
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


def add_arguments(parser):
    parser.add_argument("targets", nargs="*", default=["ops"],
                        help="what to verify: 'ops' (default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", action="append", choices=["float32", "float64"],
                        help="dtype to check (repeatable; default both)")
    parser.add_argument("--seed", type=int, default=0)


def report(rows, title):
    """Prints the table and a one-line verdict; returns the exit status."""
    print(format_table(rows, title))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} comparisons within tolerance")
    return 1 if failed else 0


def run(args):
    if args.device == "cuda" and not torch.cuda.is_available():
        print("verify: --device cuda but no CUDA GPU is visible", file=sys.stderr)
        return 2
    dtypes = [getattr(torch, d) for d in (args.dtype or ["float32", "float64"])]
    rows = verify_ops(args.device, dtypes, args.seed)
    return report(rows, f"pycnn ops vs torch.nn.functional on {args.device}")
