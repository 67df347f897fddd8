"""64-bit indexing: inputs with more than 2**31 elements in one plane and in
the batch, so that any int32 offset, index or plane-size product overflows.

They cost almost nothing: torch.empty of 17 GB reserves address space only,
untouched pages are never backed by memory (reads map the shared zero page),
and the options (stride of nearly the whole plane) make the ops read only a
few small windows.  Only the elements in those windows are written.  The
expected results are computed from the windows directly.  Backward ops that
write a full-size grad_input (17 GB) are not run; conv2d's weight gradient
reads only the windows and is."""
import pytest
import torch

from pycnn import functional as F

ops = torch.ops.pycnn

H, W = 2 ** 16 + 1, 2 ** 15 + 1       # one plane: 2_147_581_953 elements > 2**31
N = 2                                  # the second plane starts past 2**31 too
PLANE = H * W
assert PLANE > 2 ** 31


@pytest.fixture(scope="module")
def huge():
    """(2, 1, H, W) float32 of untouched memory; the windows are filled in by tests."""
    try:
        x = torch.empty(N, 1, H, W, dtype=torch.float32)
    except RuntimeError as error:  # strict overcommit: address space not granted
        pytest.skip(f"cannot reserve {N * PLANE * 4 / 2 ** 30:.0f} GiB of address space: {error}")
    yield x
    del x


def fill_windows(x, rows, cols, size):
    """Writes random values into the size x size windows at rows x cols."""
    for r in rows:
        for c in cols:
            x[:, :, r:r + size[0], c:c + size[1]] = torch.randn(N, 1, *size)


def window(x, n, r, c, size):
    return x[n, 0, r:r + size[0], c:c + size[1]].to(torch.float64)


def test_max_pool2d_indices_past_2_31(huge):
    k, stride = (2, 2), (H - 2, W - 2)    # windows at the four corners of each plane
    rows, cols = (0, H - 2), (0, W - 2)
    fill_windows(huge, rows, cols, k)
    out, idx = F.max_pool2d(huge, k, stride, return_indices=True)
    assert out.shape == (N, 1, 2, 2)
    for n in range(N):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                win = window(huge, n, r, c, k)
                flat = int(win.argmax())
                want_index = (r + flat // 2) * W + c + flat % 2
                assert out[n, 0, i, j].item() == win.max().item()
                assert idx[n, 0, i, j].item() == want_index, (n, i, j)
    assert idx.max().item() > 2 ** 31


def test_avg_pool2d_past_2_31(huge):
    k, stride = (3, 2), (H - 3, W - 2)
    rows, cols = (0, H - 3), (0, W - 2)
    fill_windows(huge, rows, cols, k)
    out = F.avg_pool2d(huge, k, stride)
    assert out.shape == (N, 1, 2, 2)
    for n in range(N):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                want = window(huge, n, r, c, k).mean().item()
                assert abs(out[n, 0, i, j].item() - want) <= 1e-6 * (1 + abs(want))


def test_conv2d_forward_and_weight_gradient_past_2_31(huge):
    k, stride = (2, 3), (H - 2, W - 3)
    rows, cols = (0, H - 2), (0, W - 3)
    fill_windows(huge, rows, cols, k)
    weight = torch.randn(3, 1, *k)
    bias = torch.randn(3)
    out = F.conv2d(huge, weight, bias, stride=stride)
    assert out.shape == (N, 3, 2, 2)
    grad_output = torch.randn(N, 3, 2, 2)
    grad_weight = ops.conv2d_weight_backward(grad_output, huge, [3, 1, *k], list(stride), [0], [1], 1)
    want_grad_weight = torch.zeros(3, 1, *k, dtype=torch.float64)
    w64 = weight.to(torch.float64)
    for n in range(N):
        for i, r in enumerate(rows):
            for j, c in enumerate(cols):
                win = window(huge, n, r, c, k)
                for o in range(3):
                    want = (win * w64[o, 0]).sum().item() + bias[o].item()
                    assert abs(out[n, o, i, j].item() - want) <= 1e-5 * (1 + abs(want)), (n, o, i, j)
                    want_grad_weight[o, 0] += grad_output[n, o, i, j].item() * win
    torch.testing.assert_close(grad_weight.to(torch.float64), want_grad_weight, rtol=1e-5, atol=1e-5)
