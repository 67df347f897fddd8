"""torch.compile(fullgraph=True) of a model built from pycnn.nn layers: no
graph break, the eager result, and a working backward."""
import pytest
import torch

import pycnn


def small_model():
    return torch.nn.Sequential(
        pycnn.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        pycnn.nn.MaxPool2d(2, ceil_mode=True),
        pycnn.nn.Conv2d(8, 8, 3, padding="same", groups=4, padding_mode="reflect"),
        pycnn.nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
        pycnn.nn.Conv2d(8, 6, (1, 2), stride=(1, 2)),
        pycnn.nn.AdaptiveMaxPool2d((3, None)),
        pycnn.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(6, 4),
    )


def run(model, x):
    """Output and the gradients of the input and every parameter."""
    model.zero_grad()
    x = x.clone().requires_grad_()
    out = model(x)
    out.square().sum().backward()
    return out.detach(), x.grad, [p.grad.clone() for p in model.parameters()]


def compare(eager, compiled, x):
    out, grad_x, grads = run(eager, x)
    c_out, c_grad_x, c_grads = run(compiled, x)
    torch.testing.assert_close(c_out, out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(c_grad_x, grad_x, rtol=1e-5, atol=1e-6)
    for g, c_g in zip(grads, c_grads, strict=True):
        torch.testing.assert_close(c_g, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_compiled_model_matches_eager(backend):
    torch._dynamo.reset()
    model = small_model()
    compiled = torch.compile(model, backend=backend, fullgraph=True)
    compare(model, compiled, torch.randn(2, 3, 13, 15))
    # The layout of the input reaches the fake kernels too.
    compare(model, compiled, torch.randn(2, 3, 13, 15).contiguous(memory_format=torch.channels_last))


def test_no_graph_break():
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(small_model())(torch.randn(1, 3, 9, 10))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_compiled_functional_with_dynamic_shapes():
    """Shapes traced symbolically: the fake kernels' size arithmetic on SymInts."""
    torch._dynamo.reset()

    def f(x, w):
        y = pycnn.functional.conv2d(x, w, stride=2, padding=1)
        y = pycnn.functional.max_pool2d(y, 3, stride=2, padding=1, ceil_mode=True)
        return pycnn.functional.avg_pool2d(y, 2, ceil_mode=True)

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True, dynamic=True)
    w = torch.randn(4, 3, 3, 3)
    for size in (9, 16, 23):
        x = torch.randn(2, 3, size, size + 3)
        torch.testing.assert_close(compiled(x, w), f(x, w))
