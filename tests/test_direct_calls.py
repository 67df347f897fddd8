"""pycnn.functional's pooling calls go straight to pycnn._C (the same
dispatcher call as torch.ops.pycnn.<op>, without its per-call schema
matching) for plain tensors, and through torch.ops for everything that
torch.ops honours and the direct call would not: tensor subclasses,
torch-function modes and arguments that are not plain ints."""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from pycnn import functional as F

POOLS = {
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: TF.max_pool2d(x, 3, 2, 1),
                   "max_pool2d"),
    "max_pool2d_with_indices": (lambda x: F.max_pool2d(x, 3, 2, 1, return_indices=True)[0],
                                lambda x: TF.max_pool2d(x, 3, 2, 1), "max_pool2d_with_indices"),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2, divisor_override=3),
                   lambda x: TF.avg_pool2d(x, 2, divisor_override=3), "avg_pool2d"),
    "adaptive_avg_pool2d": (lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
                            lambda x: TF.adaptive_avg_pool2d(x, (3, 2)), "adaptive_avg_pool2d"),
    "adaptive_max_pool2d": (lambda x: F.adaptive_max_pool2d(x, 3),
                            lambda x: TF.adaptive_max_pool2d(x, 3), "adaptive_max_pool2d"),
}


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


class FunctionLog(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.funcs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.funcs.append(str(func))
        return func(*args, **(kwargs or {}))


class Tagged(torch.Tensor):
    """A subclass that records the functions it is handed."""
    seen = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.seen.append(str(func))
        return super().__torch_function__(func, types, args, kwargs or {})


@pytest.mark.parametrize("pool", list(POOLS))
def test_direct_call_matches_torch_with_gradients(pool):
    ours, theirs, _ = POOLS[pool]
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64, requires_grad=True)
    out, ref = ours(x), theirs(x)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, x, g), torch.autograd.grad(ref, x, g))


@pytest.mark.parametrize("pool", list(POOLS))
def test_dispatch_modes_see_the_direct_call(pool):
    ours, _, op = POOLS[pool]
    with OpLog() as log:
        ours(torch.randn(1, 2, 8, 8))
    assert f"pycnn.{op}" in log.ops


@pytest.mark.parametrize("pool", list(POOLS))
def test_torch_function_modes_get_torch_ops(pool):
    ours, theirs, op = POOLS[pool]
    x = torch.randn(1, 2, 8, 8)
    with FunctionLog() as log:
        out = ours(x)
    assert any(f"pycnn.{op}" in name for name in log.funcs), log.funcs
    torch.testing.assert_close(out, theirs(x))


@pytest.mark.parametrize("pool", list(POOLS))
def test_tensor_subclasses_get_torch_ops(pool):
    ours, theirs, op = POOLS[pool]
    x = torch.randn(1, 2, 8, 8)
    Tagged.seen = []
    out = ours(x.as_subclass(Tagged))
    assert any(f"pycnn.{op}" in name for name in Tagged.seen), Tagged.seen
    torch.testing.assert_close(out.as_subclass(torch.Tensor), theirs(x))


def test_arguments_that_are_not_plain_ints_take_torch_ops():
    x = torch.randn(1, 2, 9, 9, requires_grad=True)
    with OpLog() as log:
        out = F.max_pool2d(x, (np.int64(3), np.int64(2)), stride=(2, np.int64(1)))
    assert "pycnn.max_pool2d_with_indices" in log.ops
    torch.testing.assert_close(out, TF.max_pool2d(x, (3, 2), stride=(2, 1)))


def test_errors_are_the_same_on_both_paths():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match="padding"):
        F.max_pool2d(x, 2, padding=5)
    with FunctionLog(), pytest.raises(ValueError, match="padding"):
        F.max_pool2d(x, 2, padding=5)


class NoTorchOps:
    def __getattr__(self, name):
        raise AssertionError(f"torch.ops.pycnn.{name} was called for a plain tensor")


@pytest.mark.parametrize("pool", list(POOLS))
def test_plain_tensors_skip_torch_ops(pool, monkeypatch):
    ours, theirs, _ = POOLS[pool]
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    monkeypatch.setattr(F, "ops", NoTorchOps())
    out = ours(x)
    out.sum().backward()  # the backward runs in C++, never through torch.ops either
    torch.testing.assert_close(out, theirs(x))
