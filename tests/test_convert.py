"""pycnn.convert: any model onto pycnn's layers, everything else kept."""
import contextlib
import copy
import warnings

import pytest
import torch
from torch import nn

import pycnn
import pycnn.nn as pnn
from pycnn.convert import ConversionWarning, to_torch

TORCH_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def layer_types(model):
    return {name: type(m) for name, m in model.named_modules() if isinstance(m, TORCH_LAYERS)}


def all_pycnn(model):
    return all(type(m).__module__ == "pycnn.nn" for m in model.modules() if isinstance(m, TORCH_LAYERS))


def run(model, x):
    """Output and the gradients of the input and of every parameter."""
    x = x.clone().requires_grad_()
    out = model(x)
    if isinstance(out, tuple):
        out = out[0]
    grad_output = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [x] + params, grad_output)
    return [out.detach()] + list(grads)


def assert_same(a, b, rtol=1e-10):
    """[output, gradients...] equal to rounding.  Gradients get an absolute
    slack relative to the largest of them: a convolution's bias before batch
    norm in train mode has a gradient that is zero but for rounding."""
    assert len(a) == len(b)
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=rtol * b[0].abs().max().item())
    scale = max(v.abs().max().item() for v in b[1:])
    for u, v in zip(a[1:], b[1:]):
        torch.testing.assert_close(u, v, rtol=rtol, atol=rtol * scale)


@contextlib.contextmanager
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConversionWarning)
        yield


class Nested(nn.Module):
    """A user model: Sequentials, a ModuleList and a ModuleDict, every option of every layer."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1, padding_mode="reflect"),
            nn.BatchNorm2d(8), nn.ReLU(),
            nn.Sequential(nn.Conv2d(8, 8, 3, padding="same", dilation=2, groups=4, bias=False),
                          nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)))
        self.branches = nn.ModuleList([
            nn.Sequential(nn.Conv2d(8, 4, (3, 1), padding=(1, 0), padding_mode="circular"),
                          nn.AvgPool2d(2, ceil_mode=True, count_include_pad=False)),
            nn.Sequential(nn.Conv2d(8, 4, 3, padding_mode="replicate", padding=1),
                          nn.AvgPool2d(3, stride=2, padding=1, divisor_override=5))])
        self.heads = nn.ModuleDict({"avg": nn.AdaptiveAvgPool2d((3, None)), "max": nn.AdaptiveMaxPool2d(2)})
        self.pool_with_indices = nn.MaxPool2d(2, return_indices=True)
        self.fc = nn.Linear(8 * 3 * 2 + 8 * 2 * 2, 5)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([b(x) for b in self.branches], 1)
        x, _ = self.pool_with_indices(torch.cat([x, x], 3))
        return self.fc(torch.cat([self.heads["avg"](x).flatten(1)[:, :48], self.heads["max"](x).flatten(1)], 1))


@pytest.fixture
def resnet18():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).double()


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_torchvision_resnet18_converted_matches_the_original(resnet18, mode):
    getattr(resnet18, mode)()
    with no_warnings():
        converted = pycnn.convert(resnet18, inplace=False)
    assert all_pycnn(converted) and not any(type(m).__module__ == "pycnn.nn" for m in resnet18.modules())
    assert converted.training == resnet18.training
    assert len(layer_types(converted)) == 20 + 1 + 1  # 20 convolutions, the max pool, the average pool
    x = torch.randn(2, 3, 45, 45, dtype=torch.float64)
    assert_same(run(converted, x), run(resnet18, x))
    # Train mode: batch norm updated both copies' running statistics alike.
    for (name, a), b in zip(converted.named_buffers(), resnet18.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_custom_nested_model_converted_matches_the_original(mode):
    torch.manual_seed(0)
    model = getattr(Nested().double(), mode)()
    with no_warnings():
        converted = pycnn.convert(model, inplace=False)
    assert all_pycnn(converted)
    assert len(layer_types(converted)) == 10
    x = torch.randn(2, 3, 23, 19, dtype=torch.float64)
    assert_same(run(converted, x), run(model, x))
    assert all(a.training == b.training for a, b in zip(converted.modules(), model.modules()))


def test_inplace_keeps_the_module_objects_parameters_hooks_and_flags():
    torch.manual_seed(0)
    model = Nested().double().eval()
    model.stem[0].weight.requires_grad_(False)
    model.stem[3][0].train()  # one layer in a mode of its own
    conv = model.stem[0]
    parameters = list(model.parameters())
    calls = []
    conv.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    expected = model(x)
    returned = pycnn.convert(model)
    assert returned is model and model.stem[0] is conv and type(conv) is pnn.Conv2d
    assert all(a is b for a, b in zip(model.parameters(), parameters))
    assert not conv.weight.requires_grad and conv.weight.dtype == torch.float64
    assert model.stem[3][0].training and not model.stem[0].training
    calls.clear()
    torch.testing.assert_close(model(x), expected, rtol=1e-12, atol=1e-12)
    assert calls == [(1, 8, 8, 8)]


def test_a_copy_leaves_the_original_alone():
    model = Nested()
    before = layer_types(model)
    copy_ = pycnn.convert(model, inplace=False)
    assert layer_types(model) == before
    assert all(a is not b and torch.equal(a, b) for a, b in zip(copy_.parameters(), model.parameters()))


def test_a_shared_layer_stays_shared():
    conv = nn.Conv2d(3, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    pycnn.convert(model)
    assert model[0] is model[2] and type(conv) is pnn.Conv2d


def test_a_single_layer_converts():
    pool = nn.MaxPool2d(2)
    assert type(pycnn.convert(pool)) is pnn.MaxPool2d


def test_layers_pycnn_cannot_take_are_left_and_listed():
    class SameConv(nn.Conv2d):  # a third party's variant with its own forward
        def forward(self, x):
            return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.Sequential(SameConv(4, 4, 3), nn.LazyConv2d(4, 1), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(4, 4, 1).half(), nn.AvgPool2d(2)))
    with pytest.warns(ConversionWarning) as record:
        pycnn.convert(model)
    message = str(record[0].message)
    assert "left 4 layer(s)" in message
    for expected in ["1.0 (SameConv): subclass", "1.1 (LazyConv2d): lazy layer not yet initialised",
                     "2.0 (Conv2d): weight of dtype torch.float16", "2.1 (AvgPool2d): its enclosing module holds "
                     "tensors of dtype torch.float16"]:
        assert expected in message
    assert type(model[1][0]) is SameConv and type(model[1][1]) is nn.LazyConv2d
    assert type(model[2][0]) is nn.Conv2d and type(model[2][1]) is nn.AvgPool2d
    assert type(model[0]) is pnn.Conv2d and type(model[1][2]) is pnn.MaxPool2d


def test_a_lazy_layer_converts_once_initialised():
    model = nn.Sequential(nn.LazyConv2d(4, 3))
    model(torch.randn(1, 3, 8, 8))
    with no_warnings():
        pycnn.convert(model)
    assert type(model[0]) is pnn.Conv2d


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_scripted_layer_is_left_and_listed():
    model = nn.Sequential(torch.jit.script(nn.Conv2d(3, 3, 1)), nn.Conv2d(3, 3, 1))
    with pytest.warns(ConversionWarning, match=r"0 \(Conv2d\): TorchScript"):
        pycnn.convert(model)
    assert type(model[1]) is pnn.Conv2d


def test_a_parametrized_convolution_keeps_its_parametrization():
    torch.manual_seed(0)
    conv = torch.nn.utils.parametrizations.weight_norm(nn.Conv2d(3, 4, 3).double())
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    expected = run(conv, x)
    with no_warnings():
        pycnn.convert(conv)
    assert isinstance(conv, pnn.Conv2d) and torch.nn.utils.parametrize.is_parametrized(conv)
    assert_same(run(conv, x), expected)
    torch.nn.utils.parametrize.remove_parametrizations(conv, "weight")
    assert type(conv) is pnn.Conv2d


def test_to_torch_is_the_inverse():
    model = pycnn.models.lenet5(variant="classic")
    twin = to_torch(model, inplace=False)
    assert not any(type(m).__module__ == "pycnn.nn" for m in twin.modules())
    assert all_pycnn(model)
    assert type(pycnn.convert(twin).C3.convs[0]) is pnn.Conv2d


def test_to_torch_maps_a_subclass_of_a_pycnn_layer_to_torchs():
    class Mine(pnn.Conv2d):
        pass
    assert type(to_torch(Mine(1, 1, 1))) is nn.Conv2d


def test_convert_wants_a_module():
    with pytest.raises(TypeError, match="must be a torch.nn.Module, got Tensor"):
        pycnn.convert(torch.zeros(1))


def test_the_module_is_callable_however_it_was_imported():
    import pycnn.convert as module
    assert pycnn.convert is module and module.convert(nn.MaxPool2d(2)).__class__ is pnn.MaxPool2d
    assert copy.copy(pycnn.convert(nn.AvgPool2d(2))).__class__ is pnn.AvgPool2d


# ----------------------------------------------------------------------------- fuse_relu

def features():
    """A VGG-like feature stack: Conv2d + ReLU pairs, a pool between, a final pair."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 4, 1), nn.ReLU(inplace=True), nn.Conv2d(4, 4, 1)).double()


def test_fuse_relu_fuses_the_pairs_of_a_sequential_and_keeps_results_and_keys():
    torch.manual_seed(0)
    model = features()
    reference = copy.deepcopy(model)
    with no_warnings():
        pycnn.convert(model, fuse_relu=True)
    assert [type(m) for m in model] == [pnn.Conv2dReLU, pnn.FusedReLU, pnn.Conv2dReLU, pnn.FusedReLU,
                                        pnn.MaxPool2d, pnn.Conv2dReLU, pnn.FusedReLU, pnn.Conv2d]
    assert list(model.state_dict()) == list(reference.state_dict())
    assert model[1].inplace and not model[3].inplace
    x = torch.randn(2, 3, 10, 10, dtype=torch.float64)
    assert (reference[0](x) < 0).any()
    assert_same(run(model, x), run(reference, x))

    back = to_torch(model, inplace=False)
    assert [type(m) for m in back] == [type(m) for m in reference]
    assert back[1].inplace and not back[3].inplace
    assert_same(run(back, x), run(reference, x))


def test_fuse_relu_leaves_hooked_and_shared_modules_alone():
    shared = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), shared, nn.Conv2d(4, 4, 3), shared,
                          nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU())
    model[4].register_forward_hook(lambda module, args, out: None)
    model[7].register_forward_pre_hook(lambda module, args: None)
    pycnn.convert(model, fuse_relu=True)
    assert [type(m) for m in model] == [pnn.Conv2d, nn.ReLU] * 4


def test_without_fuse_relu_nothing_is_fused():
    model = pycnn.convert(features())
    assert type(model[0]) is pnn.Conv2d and type(model[1]) is nn.ReLU


def test_to_torch_keeps_a_lone_conv2d_relu_and_says_so():
    model = nn.Sequential(pnn.Conv2dReLU(3, 4, 3), nn.Identity())
    with pytest.warns(ConversionWarning, match=r"left 1 Conv2dReLU layer\(s\) as pycnn's .*: 0"):
        to_torch(model)
    assert type(model[0]) is pnn.Conv2dReLU
