"""Comparison of pycnn's ops with torch's, forward and every gradient.

The reference is always torch in float64, run on exactly the values pycnn
was given (float32 inputs are widened, not re-drawn), so a float32 result is
judged against the true answer rather than against torch's own float32
rounding.

Tolerance.  Every op here is a sum of products (convolution, average
pooling) or a selection (max pooling), and its backward ops are too.  The
rounding error of such a sum is bounded by a small multiple of the sum of
the absolute values of its terms, so each element of a result may differ
from the reference by at most

    rtol[dtype] * S,    S = the same op (or gradient) computed on |operands|,

elementwise.  That bound is tight where the terms cancel and loose where
they do not, and it cannot be met by an index, stride or tile-remainder bug,
whose errors are of the order of the values themselves.
    float64: rtol = 1e-11  (float64 sums of up to ~10^4 terms round to ~1e-13 S)
    float32: rtol = 2e-5   (random-walk rounding of ~10^4 float32 terms is
                            ~1e-6 S; 2e-5 leaves room for any summation order)
Max pooling's forward is a selection and must be exact.  NaN must appear in
exactly the elements where the reference has NaN: outputs are poisoned with
NaN in the tests (conftest.py), so an element a kernel never writes fails.
"""
import torch

RTOL = {torch.float64: 1e-11, torch.float32: 2e-5}
DTYPES = [torch.float64, torch.float32]
DTYPE_IDS = ["f64", "f32"]


def layout_of(t):
    """'channels_last', 'contiguous' or 'strided' (neither)."""
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return "channels_last"
    return "contiguous" if t.is_contiguous() else "strided"


def _first_index(mask):
    return tuple(int(i) for i in mask.nonzero()[0])


def assert_close_to_reference(ours, reference, scale, dtype, what, exact=False):
    """ours (in dtype) against reference and scale (float64, same shape)."""
    assert isinstance(ours, torch.Tensor), f"{what}: expected a tensor, got {type(ours).__name__}"
    assert ours.shape == reference.shape, (
        f"{what}: shape {list(ours.shape)}, torch gives {list(reference.shape)}")
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype}, expected {dtype}"
    ours = ours.detach().to(torch.float64)
    reference = reference.detach()
    nan_ours, nan_ref = ours.isnan(), reference.isnan()
    if not torch.equal(nan_ours, nan_ref):
        at = _first_index(nan_ours != nan_ref)
        raise AssertionError(
            f"{what}: NaN pattern differs from torch's ({int((nan_ours != nan_ref).sum())} of "
            f"{ours.numel()} elements), first at {at}: ours {ours[at].item()}, torch "
            f"{reference[at].item()} (an unwritten output element shows as NaN)")
    inf_ref = reference.isinf()
    if (inf_ref & (ours != reference)).any():
        at = _first_index(inf_ref & (ours != reference))
        raise AssertionError(f"{what}: torch gives {reference[at].item()} at {at}, ours "
                             f"{ours[at].item()}")
    same = (ours == reference) | nan_ref
    error = torch.where(same, torch.zeros_like(ours), (ours - reference).abs())
    bound = torch.zeros_like(ours) if exact else RTOL[dtype] * scale.detach().abs()
    bad = error > bound
    if bad.any():
        at = _first_index(bad)
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {ours.numel()} elements differ from torch beyond "
            f"{'exact equality' if exact else f'rtol={RTOL[dtype]} x |op|(|operands|)'}; first at "
            f"{at}: ours {ours[at].item()!r}, torch {reference[at].item()!r}, allowed error "
            f"{bound[at].item():.3g}, max error {error.max().item():.3g}")


def _split(result):
    """(differentiable output, indices or None) from an op's result."""
    if isinstance(result, tuple):
        return result[0], result[1]
    return result, None


def compare_with_torch(ours_fn, torch_fn, inputs, dtype, *, linear=True, grad_output_layout=None,
                       check_layout=(), what=""):
    """Runs ours_fn and torch_fn on the same values and compares outputs,
    indices (if the functions return (output, indices)) and the gradient of
    every input that requires grad.

    inputs: name -> float64 tensor; those with requires_grad are differentiated.
    ours_fn gets copies in `dtype`, torch_fn float64 copies of the same values;
    both are called with the inputs as keyword arguments.
    linear: the op is a sum of products (scale = op on |operands|); otherwise a
    selection (max pooling: forward exact, gradient scale from |grad_output|).
    grad_output_layout: None (contiguous), 'like_output', 'channels_last',
    'transposed' (a non-contiguous view) or 'expanded' (stride 0, as from .sum()).
    check_layout: names ('output' and/or input names) whose result must have
    torch's memory layout.
    """
    wanted = [k for k, v in inputs.items() if isinstance(v, torch.Tensor) and v.requires_grad]

    def leaves(cast):
        return {k: (cast(v.detach()).requires_grad_(v.requires_grad) if isinstance(v, torch.Tensor)
                    else v) for k, v in inputs.items()}

    ours_in = leaves(lambda t: t.to(dtype).clone())
    ref_in = leaves(lambda t: t.to(dtype).to(torch.float64).clone())
    ours_out, ours_idx = _split(ours_fn(**ours_in))
    ref_out, ref_idx = _split(torch_fn(**ref_in))
    tag = f"{what} [{dtype}]"

    if linear:
        abs_in = leaves(lambda t: t.to(dtype).to(torch.float64).abs())
        scale_out, _ = _split(torch_fn(**abs_in))
    else:
        scale_out = ref_out.abs()
    assert_close_to_reference(ours_out, ref_out, scale_out, dtype, f"{tag} output", exact=not linear)
    if "output" in check_layout:
        assert layout_of(ours_out) == layout_of(ref_out), (
            f"{tag} output layout {layout_of(ours_out)}, torch's {layout_of(ref_out)}")
    if ref_idx is not None:
        assert ours_idx is not None and ours_idx.dtype == torch.int64
        if not torch.equal(ours_idx, ref_idx):
            at = _first_index(ours_idx != ref_idx)
            raise AssertionError(f"{tag} indices differ from torch's at {at}: ours "
                                 f"{ours_idx[at].item()}, torch {ref_idx[at].item()}")
        if "output" in check_layout:
            assert layout_of(ours_idx) == layout_of(ref_idx), f"{tag} indices layout"
    if not wanted:
        return

    grad_output = torch.randn(ref_out.shape, dtype=torch.float64).to(dtype)
    ours_g = _arrange(grad_output, grad_output_layout, ours_out)
    ref_g = _arrange(grad_output.to(torch.float64), grad_output_layout, ref_out)
    ours_grads = torch.autograd.grad(ours_out, [ours_in[k] for k in wanted], ours_g,
                                     allow_unused=True)
    ref_grads = torch.autograd.grad(ref_out, [ref_in[k] for k in wanted], ref_g, allow_unused=True,
                                    retain_graph=not linear)
    if linear:
        scale_grads = torch.autograd.grad(scale_out, [abs_in[k] for k in wanted], ref_g.abs(),
                                          allow_unused=True)
    else:
        scale_grads = torch.autograd.grad(ref_out, [ref_in[k] for k in wanted], ref_g.abs(),
                                          allow_unused=True)
    for name, ours, ref, scale in zip(wanted, ours_grads, ref_grads, scale_grads):
        if ref is None:
            ref = scale = torch.zeros_like(inputs[name], dtype=torch.float64)
        assert ours is not None, f"{tag} grad_{name}: no gradient"
        assert_close_to_reference(ours, ref, scale, dtype, f"{tag} grad_{name}")
        if name in check_layout:
            assert layout_of(ours) == layout_of(ref), (
                f"{tag} grad_{name} layout {layout_of(ours)}, torch's {layout_of(ref)}")


def _arrange(grad, layout, like):
    """grad (contiguous) in the requested memory arrangement, same values."""
    if layout is None:
        return grad.contiguous()
    if layout == "like_output":
        return torch.empty_like(like, dtype=grad.dtype).copy_(grad)
    if layout == "channels_last":
        return grad.contiguous(memory_format=torch.channels_last) if grad.dim() == 4 else grad
    if layout == "transposed":
        return grad.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "expanded":
        # One value broadcast everywhere: the grad_output that y.sum() produces.
        return grad.flatten()[:1].reshape([1] * grad.dim()).expand(grad.shape)
    raise ValueError(f"unknown grad_output layout {layout!r}")


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


VIEWS = ["contiguous", "channels_last", "sliced", "channel_slice", "transposed_hw", "permuted",
         "channels_last_sliced", "batch_expanded", "offset_view"]


def make_view(kind, shape, requires_grad=True):
    """(leaf, view): a fresh float64 leaf and a function that turns it into a
    tensor of `shape` (N, C, H, W) in the memory arrangement `kind`: plain,
    channels_last, or one of the views a kernel must read through its strides
    (strided slices, a channel slice, transposed or permuted dimensions, a
    stride-0 batch, a storage offset that breaks vector alignment)."""
    n, c, h, w = shape

    def leaf(*size):
        return torch.randn(*size, dtype=torch.float64).requires_grad_(requires_grad)

    if kind == "contiguous":
        return leaf(n, c, h, w), lambda x: x
    if kind == "channels_last":
        return leaf(n, c, h, w), channels_last
    if kind == "sliced":
        return leaf(n, c, 2 * h + 1, 3 * w), lambda x: x[:, :, 1::2, ::3]
    if kind == "channel_slice":
        return leaf(n, 2 * c, h, w), lambda x: x[:, 1::2]
    if kind == "transposed_hw":
        return leaf(n, c, w, h), lambda x: x.transpose(2, 3)
    if kind == "permuted":
        return leaf(c, n, h, w), lambda x: x.permute(1, 0, 2, 3)
    if kind == "channels_last_sliced":
        return leaf(n, c, h, w + 1), lambda x: channels_last(x)[:, :, :, 1:]
    if kind == "batch_expanded":
        return leaf(1, c, h, w), lambda x: x.expand(n, c, h, w)
    if kind == "offset_view":
        return leaf(n * c * h * w + 5), lambda x: x[5:].view(n, c, h, w)
    raise ValueError(f"unknown view {kind!r}")
