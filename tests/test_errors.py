"""Every invalid call raises ValueError or RuntimeError whose message names the
parameter and the offending values; never a crash, hang or silent result.
Both the Python face (pycnn.functional, pycnn.nn) and the raw ops
(torch.ops.pycnn.*), whose checks run in C++, are exercised."""
import re

import pytest
import torch

import pycnn
from pycnn import functional as F

ops = torch.ops.pycnn


def x4(*shape, dtype=torch.float32, device="cpu"):
    return torch.randn(*shape, dtype=dtype, device=device)


X = x4(2, 4, 8, 8)
W = x4(6, 4, 3, 3)
B = x4(6)
G = x4(2, 6, 6, 6)  # conv2d(X, W)'s grad_output
P = x4(2, 4, 4, 4)  # 2x2 pooling's grad_output
IDX = torch.zeros(2, 4, 4, 4, dtype=torch.int64)
CONV_ARGS = ([1], [0], [1], 1)
POOL_ARGS = ([2], [2], [0], [1], False)
AVG_ARGS = ([2], [2], [0], False, True, None)

# (id, call, exception type, fragments the message must contain)
CASES = [
    # ---- number of dimensions
    ("conv 2-D input", lambda: F.conv2d(x4(8, 8), W), ValueError, ["input", "3-D", "4-D", "[8, 8]"]),
    ("conv 5-D input", lambda: F.conv2d(x4(1, 2, 4, 8, 8), W), ValueError, ["input", "[1, 2, 4, 8, 8]"]),
    ("conv 3-D weight", lambda: F.conv2d(X, x4(6, 4, 3)), ValueError, ["weight", "4-D", "[6, 4, 3]"]),
    ("op conv 3-D input", lambda: ops.conv2d(x4(4, 8, 8), W, None, *CONV_ARGS), ValueError,
     ["input", "4-D", "[4, 8, 8]"]),
    ("max 2-D input", lambda: F.max_pool2d(x4(8, 8), 2), ValueError, ["input", "[8, 8]"]),
    ("avg 5-D input", lambda: F.avg_pool2d(x4(1, 1, 1, 8, 8), 2), ValueError, ["input", "[1, 1, 1, 8, 8]"]),
    ("adaptive avg 2-D input", lambda: F.adaptive_avg_pool2d(x4(8, 8), 2), ValueError, ["input", "[8, 8]"]),
    ("adaptive max 1-D input", lambda: F.adaptive_max_pool2d(x4(8), 2), ValueError, ["input", "[8]"]),
    ("op max 3-D input", lambda: ops.max_pool2d_with_indices(x4(4, 8, 8), [2]), ValueError,
     ["input", "4-D", "[4, 8, 8]"]),
    ("op adaptive 3-D input", lambda: ops.adaptive_avg_pool2d(x4(4, 8, 8), [2, 2]), ValueError,
     ["input", "[4, 8, 8]"]),
    ("not a tensor", lambda: F.conv2d([[1.0]], W), TypeError, ["input", "Tensor", "list"]),
    # ---- dtypes
    ("conv input/weight dtype", lambda: F.conv2d(X, W.double()), RuntimeError,
     ["input", "weight", "Float", "Double"]),
    ("conv bias dtype", lambda: F.conv2d(X, W, B.double()), RuntimeError, ["bias", "Float", "Double"]),
    ("conv int input", lambda: F.conv2d(X.int(), W.int()), ValueError, ["input", "Int", "float32"]),
    ("conv int64 input", lambda: F.conv2d(X.long(), W.long()), ValueError, ["input", "Long"]),
    ("conv complex input", lambda: F.conv2d(X.cfloat(), W.cfloat()), ValueError, ["input", "ComplexFloat"]),
    ("conv half on cpu", lambda: F.conv2d(X.half(), W.half()), ValueError, ["input", "Half", "cpu"]),
    ("conv bool", lambda: F.conv2d(X.bool(), W.bool()), ValueError, ["input", "Bool"]),
    ("max int input", lambda: F.max_pool2d(X.int(), 2), ValueError, ["input", "Int"]),
    ("max uint8 input", lambda: F.max_pool2d(X.to(torch.uint8), 2), ValueError, ["input", "Byte"]),
    ("avg int input", lambda: F.avg_pool2d(X.long(), 2), ValueError, ["input", "Long"]),
    ("avg complex input", lambda: F.avg_pool2d(X.cdouble(), 2), ValueError, ["input", "ComplexDouble"]),
    ("adaptive avg int", lambda: F.adaptive_avg_pool2d(X.int(), 2), ValueError, ["input", "Int"]),
    ("adaptive max complex", lambda: F.adaptive_max_pool2d(X.cfloat(), 2), ValueError,
     ["input", "ComplexFloat"]),
    ("input backward dtype", lambda: ops.conv2d_input_backward(G.double(), W, [2, 4, 8, 8], *CONV_ARGS),
     RuntimeError, ["grad_output", "weight", "Double", "Float"]),
    ("weight backward dtype", lambda: ops.conv2d_weight_backward(G, X.double(), [6, 4, 3, 3], *CONV_ARGS),
     RuntimeError, ["grad_output", "input", "Double", "Float"]),
    ("bias backward int", lambda: ops.conv2d_bias_backward(G.int()), ValueError, ["grad_output", "Int"]),
    ("max backward int32 indices", lambda: ops.max_pool2d_backward(P, IDX.int(), [2, 4, 8, 8], *POOL_ARGS),
     RuntimeError, ["indices", "int64", "Int"]),
    ("adaptive max backward float indices",
     lambda: ops.adaptive_max_pool2d_backward(P, IDX.float(), [2, 4, 8, 8]), RuntimeError,
     ["indices", "int64", "Float"]),
    # ---- devices (meta against cpu: no GPU needed)
    ("conv meta input", lambda: F.conv2d(X.to("meta"), W), RuntimeError, ["input", "weight", "meta", "cpu"]),
    ("conv meta weight", lambda: F.conv2d(X, W.to("meta")), RuntimeError, ["input", "weight", "meta", "cpu"]),
    ("conv meta bias", lambda: F.conv2d(X, W, B.to("meta")), RuntimeError, ["bias", "meta", "cpu"]),
    ("op conv meta input", lambda: ops.conv2d(X.to("meta"), W, None, *CONV_ARGS), RuntimeError,
     ["input", "weight", "meta", "cpu"]),
    ("input backward meta", lambda: ops.conv2d_input_backward(G.to("meta"), W, [2, 4, 8, 8], *CONV_ARGS),
     RuntimeError, ["grad_output", "weight", "meta", "cpu"]),
    ("weight backward meta", lambda: ops.conv2d_weight_backward(G, X.to("meta"), [6, 4, 3, 3], *CONV_ARGS),
     RuntimeError, ["grad_output", "input", "meta", "cpu"]),
    ("max backward meta indices", lambda: ops.max_pool2d_backward(P, IDX.to("meta"), [2, 4, 8, 8], *POOL_ARGS),
     RuntimeError, ["indices", "grad_output", "meta", "cpu"]),
    ("adaptive max backward meta indices",
     lambda: ops.adaptive_max_pool2d_backward(P.to("meta"), IDX, [2, 4, 8, 8]), RuntimeError,
     ["indices", "grad_output", "meta", "cpu"]),
    # ---- groups and channels
    ("groups not dividing in_channels", lambda: F.conv2d(x4(1, 5, 8, 8), x4(4, 2, 3, 3), groups=2),
     RuntimeError, ["in_channels", "5", "groups", "2"]),
    ("groups not dividing out_channels", lambda: F.conv2d(x4(1, 4, 8, 8), x4(3, 2, 3, 3), groups=2),
     RuntimeError, ["out_channels", "3", "groups", "2"]),
    ("groups zero", lambda: F.conv2d(X, W, groups=0), ValueError, ["groups", "0"]),
    ("groups negative", lambda: F.conv2d(X, W, groups=-2), ValueError, ["groups", "-2"]),
    ("groups not int", lambda: F.conv2d(X, W, groups=1.5), ValueError, ["groups", "1.5"]),
    ("weight channels mismatch", lambda: F.conv2d(X, x4(6, 3, 3, 3)), RuntimeError,
     ["weight", "[6, 3, 3, 3]", "[2, 4, 8, 8]", "4"]),
    ("weight channels mismatch grouped", lambda: F.conv2d(X, x4(6, 4, 3, 3), groups=2), RuntimeError,
     ["weight", "[6, 4, 3, 3]", "groups=2", "8"]),
    ("weight empty out channels", lambda: F.conv2d(X, x4(0, 4, 3, 3)), ValueError, ["weight", "[0, 4, 3, 3]"]),
    ("weight empty kernel", lambda: F.conv2d(X, x4(6, 4, 0, 3)), ValueError, ["weight", "[6, 4, 0, 3]"]),
    # ---- kernel, stride, dilation, padding values
    ("conv stride 0", lambda: F.conv2d(X, W, stride=0), ValueError, ["stride", "(0, 0)"]),
    ("conv stride negative", lambda: F.conv2d(X, W, stride=(1, -1)), ValueError, ["stride", "(1, -1)"]),
    ("conv dilation 0", lambda: F.conv2d(X, W, dilation=(0, 1)), ValueError, ["dilation", "(0, 1)"]),
    ("conv padding negative", lambda: F.conv2d(X, W, padding=-1), ValueError, ["padding", "(-1, -1)"]),
    ("conv padding negative pair", lambda: F.conv2d(X, W, padding=(0, -2)), ValueError,
     ["padding", "(0, -2)"]),
    ("conv stride 3 ints", lambda: F.conv2d(X, W, stride=(1, 1, 1)), ValueError, ["stride", "(1, 1, 1)"]),
    ("conv padding float", lambda: F.conv2d(X, W, padding=1.0), ValueError, ["padding", "1.0"]),
    ("conv stride string", lambda: F.conv2d(X, W, stride="2"), ValueError, ["stride", "'2'"]),
    ("op conv stride list of 3", lambda: ops.conv2d(X, W, None, [1, 1, 1], [0], [1], 1), ValueError,
     ["stride", "[1, 1, 1]"]),
    ("op conv empty padding list", lambda: ops.conv2d(X, W, None, [1], [], [1], 1), ValueError,
     ["padding", "[]"]),
    ("op conv stride 0", lambda: ops.conv2d(X, W, None, [0], [0], [1], 1), ValueError, ["stride", "(0, 0)"]),
    ("op conv negative padding", lambda: ops.conv2d(X, W, None, [1], [-1, 0], [1], 1), ValueError,
     ["padding", "(-1, 0)"]),
    ("op conv dilation 0", lambda: ops.conv2d(X, W, None, [1], [0], [1, 0], 1), ValueError,
     ["dilation", "(1, 0)"]),
    ("op conv groups 0", lambda: ops.conv2d(X, W, None, [1], [0], [1], 0), ValueError, ["groups", "0"]),
    ("max kernel 0", lambda: F.max_pool2d(X, 0), ValueError, ["kernel_size", "(0, 0)"]),
    ("max kernel negative", lambda: F.max_pool2d(X, (2, -1)), ValueError, ["kernel_size", "(2, -1)"]),
    ("max stride 0", lambda: F.max_pool2d(X, 2, stride=0), ValueError, ["stride", "(0, 0)"]),
    ("max dilation 0", lambda: F.max_pool2d(X, 2, dilation=0), ValueError, ["dilation", "(0, 0)"]),
    ("max padding negative", lambda: F.max_pool2d(X, 2, padding=-1), ValueError, ["padding", "(-1, -1)"]),
    ("max padding over half kernel", lambda: F.max_pool2d(X, 3, padding=2), ValueError,
     ["padding", "half", "(2, 2)", "(3, 3)"]),
    ("max padding over half kernel (one side)", lambda: F.max_pool2d(X, (4, 2), padding=(2, 2)),
     ValueError, ["padding", "(2, 2)", "(4, 2)"]),
    ("max kernel 3 ints", lambda: F.max_pool2d(X, (2, 2, 2)), ValueError, ["kernel_size", "(2, 2, 2)"]),
    ("op max empty kernel", lambda: ops.max_pool2d_with_indices(X, []), ValueError, ["kernel_size", "[]"]),
    ("op max stride 0", lambda: ops.max_pool2d_with_indices(X, [2], [0]), ValueError, ["stride", "(0, 0)"]),
    ("op max padding over half",
     lambda: ops.max_pool2d_with_indices(X, [2], [2], [2], [1], False), ValueError, ["padding", "(2, 2)"]),
    ("avg kernel 0", lambda: F.avg_pool2d(X, (0, 2)), ValueError, ["kernel_size", "(0, 2)"]),
    ("avg stride negative", lambda: F.avg_pool2d(X, 2, stride=-1), ValueError, ["stride", "(-1, -1)"]),
    ("avg padding negative", lambda: F.avg_pool2d(X, 2, padding=(0, -1)), ValueError, ["padding", "(0, -1)"]),
    ("avg padding over half kernel", lambda: F.avg_pool2d(X, 2, padding=2), ValueError,
     ["padding", "(2, 2)", "(2, 2)"]),
    ("avg divisor_override 0", lambda: F.avg_pool2d(X, 2, divisor_override=0), ValueError,
     ["divisor_override", "0"]),
    ("avg divisor_override float", lambda: F.avg_pool2d(X, 2, divisor_override=2.5), ValueError,
     ["divisor_override", "2.5"]),
    ("op avg divisor_override 0", lambda: ops.avg_pool2d(X, [2], [2], [0], False, True, 0), ValueError,
     ["divisor_override", "0"]),
    ("adaptive negative size", lambda: F.adaptive_avg_pool2d(X, (-1, 2)), ValueError,
     ["output_size", "(-1, 2)"]),
    ("adaptive max negative size", lambda: F.adaptive_max_pool2d(X, -3), ValueError,
     ["output_size", "(-3, -3)"]),
    ("adaptive size of 3", lambda: F.adaptive_avg_pool2d(X, (1, 2, 3)), ValueError,
     ["output_size", "(1, 2, 3)"]),
    ("adaptive size string", lambda: F.adaptive_max_pool2d(X, "2"), ValueError, ["output_size", "'2'"]),
    ("op adaptive size of 3", lambda: ops.adaptive_max_pool2d(X, [1, 2, 3]), ValueError,
     ["output_size", "[1, 2, 3]"]),
    # ---- output smaller than 1
    ("conv kernel larger than input", lambda: F.conv2d(x4(1, 4, 2, 8), W), RuntimeError,
     ["kernel", "(2 x 8)", "(3 x 3)", "[1, 4, 2, 8]"]),
    ("conv dilated kernel larger than input", lambda: F.conv2d(X, W, dilation=4), RuntimeError,
     ["dilat", "(9 x 9)", "(8 x 8)"]),
    ("conv empty plane", lambda: F.conv2d(x4(1, 4, 0, 8), W, padding=1), RuntimeError,
     ["[1, 4, 0, 8]", "(2 x 10)"]),
    ("max kernel larger than input", lambda: F.max_pool2d(x4(1, 2, 3, 8), 4), ValueError,
     ["[1, 2, 3, 8]", "kernel_size=(4, 4)", "0 x 2"]),
    ("max dilated kernel larger than input", lambda: F.max_pool2d(x4(1, 2, 5, 5), 3, dilation=3),
     ValueError, ["[1, 2, 5, 5]", "dilation=(3, 3)"]),
    ("avg kernel larger than input", lambda: F.avg_pool2d(x4(1, 2, 8, 3), (2, 4)), ValueError,
     ["[1, 2, 8, 3]", "kernel_size=(2, 4)", "4 x 0"]),
    ("max empty plane", lambda: F.max_pool2d(x4(1, 2, 0, 5), 1), ValueError, ["[1, 2, 0, 5]"]),
    ("avg no channels", lambda: F.avg_pool2d(x4(1, 0, 4, 5), 1), ValueError, ["[1, 0, 4, 5]"]),
    ("adaptive empty plane", lambda: F.adaptive_avg_pool2d(x4(1, 2, 4, 0), 2), ValueError, ["[1, 2, 4, 0]"]),
    ("adaptive max empty plane", lambda: F.adaptive_max_pool2d(x4(1, 2, 0, 4), 2), ValueError,
     ["[1, 2, 0, 4]"]),
    # ---- padding strings
    ("same with stride", lambda: F.conv2d(X, W, padding="same", stride=2), ValueError,
     ["same", "stride", "(2, 2)"]),
    ("same with stride pair", lambda: F.conv2d(X, W, padding="same", stride=(1, 2)), ValueError,
     ["same", "stride", "(1, 2)"]),
    ("padding 'SAME'", lambda: F.conv2d(X, W, padding="SAME"), ValueError, ["padding", "'SAME'"]),
    ("padding 'full'", lambda: F.conv2d(X, W, padding="full"), ValueError, ["padding", "'full'"]),
    ("layer padding 'circle'", lambda: pycnn.nn.Conv2d(4, 6, 3, padding="circle"), ValueError,
     ["padding", "circle"]),
    ("layer bad padding_mode", lambda: pycnn.nn.Conv2d(4, 6, 3, padding_mode="mirror"), ValueError,
     ["padding_mode", "mirror"]),
    # ---- bias
    ("bias too long", lambda: F.conv2d(X, W, x4(7)), RuntimeError, ["bias", "[6]", "[7]"]),
    ("bias 2-D", lambda: F.conv2d(X, W, x4(1, 6)), RuntimeError, ["bias", "[6]", "[1, 6]"]),
    ("bias scalar", lambda: F.conv2d(X, W, torch.tensor(1.0)), RuntimeError, ["bias", "[6]", "[]"]),
    # ---- backward ops called directly with mismatched shapes
    ("input backward grad_output shape", lambda: ops.conv2d_input_backward(x4(2, 6, 5, 6), W, [2, 4, 8, 8],
                                                                           *CONV_ARGS),
     RuntimeError, ["grad_output", "[2, 6, 5, 6]", "[2, 6, 6, 6]"]),
    ("input backward 3-D grad_output", lambda: ops.conv2d_input_backward(x4(6, 6, 6), W, [2, 4, 8, 8],
                                                                         *CONV_ARGS),
     ValueError, ["grad_output", "[6, 6, 6]"]),
    ("input backward 3-D input_size", lambda: ops.conv2d_input_backward(G, W, [4, 8, 8], *CONV_ARGS),
     ValueError, ["input size", "[4, 8, 8]"]),
    ("input backward negative input_size", lambda: ops.conv2d_input_backward(G, W, [2, 4, -8, 8], *CONV_ARGS),
     ValueError, ["input size", "[2, 4, -8, 8]"]),
    ("weight backward grad_output shape", lambda: ops.conv2d_weight_backward(x4(2, 5, 6, 6), X, [6, 4, 3, 3],
                                                                             *CONV_ARGS),
     RuntimeError, ["grad_output", "[2, 5, 6, 6]", "[2, 6, 6, 6]"]),
    ("weight backward weight_size", lambda: ops.conv2d_weight_backward(G, X, [6, 4, 3], *CONV_ARGS),
     ValueError, ["weight size", "[6, 4, 3]"]),
    ("bias backward 3-D", lambda: ops.conv2d_bias_backward(x4(6, 6, 6)), ValueError,
     ["grad_output", "[6, 6, 6]"]),
    ("max backward grad_output shape",
     lambda: ops.max_pool2d_backward(x4(2, 4, 3, 4), IDX[:, :, :3], [2, 4, 8, 8], *POOL_ARGS),
     RuntimeError, ["grad_output", "[2, 4, 3, 4]", "[2, 4, 4, 4]"]),
    ("max backward indices shape",
     lambda: ops.max_pool2d_backward(P, IDX[:, :, :3], [2, 4, 8, 8], *POOL_ARGS), RuntimeError,
     ["indices", "[2, 4, 3, 4]", "[2, 4, 4, 4]"]),
    ("max backward index out of plane",
     lambda: ops.max_pool2d_backward(P, torch.full_like(IDX, 64), [2, 4, 8, 8], *POOL_ARGS), RuntimeError,
     ["index", "64", "8 x 8"]),
    ("max backward negative index",
     lambda: ops.max_pool2d_backward(P, torch.full_like(IDX, -1), [2, 4, 8, 8], *POOL_ARGS), RuntimeError,
     ["index", "-1", "8 x 8"]),
    ("avg backward grad_output shape",
     lambda: ops.avg_pool2d_backward(x4(2, 4, 4, 5), [2, 4, 8, 8], *AVG_ARGS), RuntimeError,
     ["grad_output", "[2, 4, 4, 5]", "[2, 4, 4, 4]"]),
    ("avg backward divisor 0",
     lambda: ops.avg_pool2d_backward(P, [2, 4, 8, 8], [2], [2], [0], False, True, 0), ValueError,
     ["divisor_override", "0"]),
    ("adaptive avg backward channels",
     lambda: ops.adaptive_avg_pool2d_backward(x4(2, 3, 4, 4), [2, 4, 8, 8]), RuntimeError,
     ["grad_output", "[2, 3, 4, 4]", "[2, 4, 8, 8]"]),
    ("adaptive avg backward input_size", lambda: ops.adaptive_avg_pool2d_backward(P, [2, 4, 8]),
     ValueError, ["input_size", "[2, 4, 8]"]),
    ("adaptive max backward indices shape",
     lambda: ops.adaptive_max_pool2d_backward(P, IDX[:, :2], [2, 4, 8, 8]), RuntimeError,
     ["indices", "[2, 2, 4, 4]", "[2, 4, 4, 4]"]),
    ("adaptive max backward index out of plane",
     lambda: ops.adaptive_max_pool2d_backward(P, torch.full_like(IDX, 100), [2, 4, 8, 8]), RuntimeError,
     ["index", "100", "8 x 8"]),
    # ---- sizes that overflow int64 arithmetic
    ("conv huge padding", lambda: F.conv2d(X, W, padding=2 ** 62), ValueError,
     ["padding", str(2 ** 62), "2^60"]),
    ("conv huge dilation", lambda: F.conv2d(X, W, dilation=2 ** 62), ValueError,
     ["dilation", str(2 ** 62), "2^60"]),
    ("conv dilated kernel overflows", lambda: F.conv2d(X, W, dilation=2 ** 60), ValueError,
     ["dilation", str(2 ** 60), "(3, 3)", "2^60"]),
    ("conv huge stride", lambda: F.conv2d(X, W, stride=(1, 2 ** 63 - 1)), ValueError,
     ["stride", str(2 ** 63 - 1), "2^60"]),
    ("weight backward huge kernel",
     lambda: ops.conv2d_weight_backward(G, X, [6, 4, 2 ** 62, 3], *CONV_ARGS), ValueError,
     ["kernel size", str(2 ** 62)]),
    ("input backward huge input size",
     lambda: ops.conv2d_input_backward(G, W, [2, 4, 2 ** 62, 8], *CONV_ARGS), ValueError,
     ["input size", str(2 ** 62)]),
    ("max huge dilation", lambda: F.max_pool2d(X, 3, dilation=2 ** 62), ValueError,
     ["dilation", str(2 ** 62), "2^60"]),
    ("max huge kernel", lambda: F.max_pool2d(X, 2 ** 62, padding=2 ** 61), ValueError,
     ["kernel_size", str(2 ** 62), "2^60"]),
    ("avg huge stride", lambda: F.avg_pool2d(X, 2, stride=2 ** 63 - 1, ceil_mode=True), ValueError,
     ["stride", str(2 ** 63 - 1), "2^60"]),
    ("max backward huge input size",
     lambda: ops.max_pool2d_backward(P, IDX, [2, 4, 2 ** 62, 8], *POOL_ARGS), ValueError,
     ["input", str(2 ** 62), "2^60"]),
    ("adaptive huge output size", lambda: F.adaptive_avg_pool2d(X, (2 ** 61, 1)), ValueError,
     ["output_size", str(2 ** 61), "2^60"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_invalid_call_raises_clean_error(case):
    name, call, error, fragments = case
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{name}: {fragment!r} not in the message {message!r}"
    # A clean error: our own message naming the op, not an internal assertion.
    if error is not TypeError and not name.startswith("layer"):
        assert re.search(r"pycnn\.\w+", message), f"{name}: message does not name the op: {message!r}"
    assert "INTERNAL ASSERT" not in message


def test_errors_leave_no_broken_state():
    """After a failed call the same op still works (nothing left half-set)."""
    for _, call, error, _ in CASES[:20]:
        with pytest.raises(error):
            call()
    torch.testing.assert_close(F.conv2d(X, W, B), torch.nn.functional.conv2d(X, W, B))


def test_out_of_plane_index_raises_from_worker_threads():
    """The index check runs inside parallel_for: it must surface as an error
    on the calling thread, whichever worker finds the bad index."""
    idx = torch.zeros(8, 16, 4, 4, dtype=torch.int64)
    idx[7, 15, 3, 3] = 10 ** 6
    with pytest.raises(RuntimeError, match="index 1000000 is outside the input plane of 8 x 8"):
        ops.max_pool2d_backward(x4(8, 16, 4, 4), idx, [8, 16, 8, 8], *POOL_ARGS)
