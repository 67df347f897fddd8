"""pycnn.models: parameter counts, torchvision's state_dict, and forward and
gradients equal to torchvision's (or, for LeNet-5, to the same model on
torch's layers) in float64."""
import contextlib
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import pycnn
from pycnn import models
from pycnn.convert import to_torch
from pycnn.models import lenet

torchvision = pytest.importorskip("torchvision")

TORCHVISION_MODELS = [n for n in models.names() if models.spec(n).torchvision]
# Whole-model float64 checks that take over ~30 s on a busy 2-core machine
# with the reference CPU kernels: still in `make test`, left out of `make test-fast`.
SLOW = {"vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
        "resnet50", "resnet101", "resnet152"}

PYCNN_LAYERS = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def on_meta(name, **kwargs):
    with torch.device("meta"):
        return models.get(name, **kwargs)


def torchvision_on_meta(name, **kwargs):
    with torch.device("meta"):
        return getattr(torchvision.models, name)(weights=None, **kwargs)


def count(module):
    return sum(p.numel() for p in module.parameters())


@contextlib.contextmanager
def default_dtype(dtype):
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(saved)


# ----------------------------------------------------------------------------- counts and keys

@pytest.mark.parametrize("name, expected", [
    ("alexnet", 61_100_840), ("vgg16", 138_357_544), ("resnet34", 21_797_672),
    ("squeezenet1_0", 1_248_424), ("squeezenet1_1", 1_235_496),
    ("lenet5", 61_706), ("lenet5_classic", 60_000),
])
def test_parameter_count(name, expected):
    assert count(on_meta(name)) == expected


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_state_dict_keys_shapes_and_dtypes_are_torchvisions(name):
    ours, theirs = on_meta(name, num_classes=17), torchvision_on_meta(name, num_classes=17)
    assert [(k, v.shape, v.dtype) for k, v in ours.state_dict().items()] == \
           [(k, v.shape, v.dtype) for k, v in theirs.state_dict().items()]
    assert count(ours) == count(theirs)


@pytest.mark.parametrize("name", models.names())
def test_convolutions_and_pools_are_pycnns_and_the_rest_torchs(name):
    model = on_meta(name)
    layers = [m for m in model.modules() if isinstance(m, PYCNN_LAYERS)]
    assert layers and all(type(m).__module__ == "pycnn.nn" for m in layers)
    others = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.BatchNorm2d, nn.ReLU, nn.Dropout))]
    assert all(type(m).__module__.startswith("torch.nn") for m in others)


@pytest.mark.parametrize("name", models.names())
def test_num_classes_sets_the_output(name):
    spec = models.spec(name)
    model = on_meta(name, num_classes=7)
    assert model(torch.empty((2,) + spec.check_size, device="meta")).shape == (2, 7)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet19'.*resnet18"):
        models.get("resnet19")


# ----------------------------------------------------------------------------- torchvision round trip

@pytest.mark.parametrize("name, size", [("resnet18", (3, 33, 33)), ("squeezenet1_1", (3, 64, 64)),
                                        ("alexnet", (3, 63, 63))])
def test_torchvision_weights_load_strictly_and_give_the_same_outputs(name, size):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    ours = models.get(name, num_classes=10).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key
    back = getattr(torchvision.models, name)(weights=None, num_classes=10)
    back.load_state_dict(ours.state_dict(), strict=True)
    for key, value in back.state_dict().items():
        assert torch.equal(value, theirs.state_dict()[key]), key
    x = torch.randn((2,) + size)
    with torch.no_grad():
        expected = theirs(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())


# ----------------------------------------------------------------------------- forward and gradients

def _train_without_dropout(model):
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.eval()
    return model


def _forward_backward(model, x, grad_output=None):
    """Output, input gradient, {parameter: gradient} and the output gradient
    used (drawn here when None)."""
    x = x.clone().requires_grad_()
    out = model(x)
    grad_output = torch.randn_like(out) if grad_output is None else grad_output
    params = dict(model.named_parameters())
    grads = torch.autograd.grad(out, [x] + list(params.values()), grad_output)
    return out.detach(), grads[0], dict(zip(params, grads[1:])), grad_output


def assert_within(ours, reference, limit, what):
    assert ours.shape == reference.shape, what
    difference = (ours - reference).abs_().max().item()
    assert difference <= limit, f"{what}: max|difference| {difference:.3e} > {limit:.3e}"


def assert_same_model(ours, reference, size, batch=2, rtol=1e-9):
    """float64 outputs and every gradient equal to rounding, in train mode
    (batch norm on batch statistics): the largest difference within rtol of
    the tensor's largest value -- and for parameters, of the largest
    gradient of the model, since a convolution's bias before batch norm has a
    gradient that is zero but for rounding."""
    _train_without_dropout(ours)
    _train_without_dropout(reference)
    x = torch.randn((batch,) + size, dtype=torch.float64)
    out, grad_x, grads, grad_output = _forward_backward(ours, x)
    ref_out, ref_grad_x, ref_grads, _ = _forward_backward(reference, x, grad_output)
    assert out.dtype == torch.float64
    assert_within(out, ref_out, rtol * ref_out.abs().max().item(), "output")
    assert_within(grad_x, ref_grad_x, rtol * ref_grad_x.abs().max().item(), "input gradient")
    assert grads.keys() == ref_grads.keys()
    scale = max(g.abs().max().item() for g in ref_grads.values())
    for key in grads:
        assert_within(grads[key], ref_grads[key], rtol * scale, key)


def _marked(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def random_float64_model(name, num_classes=10):
    """models.get(name) in float64 with every parameter drawn uniformly, none
    zero -- built on the meta device and filled once, since initialising a
    VGG's 138 M parameters the model's way takes longer than the check."""
    with default_dtype(torch.float64), torch.device("meta"):
        model = models.get(name, num_classes=num_classes)
    model.to_empty(device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            bound = (6.0 / p[0].numel()) ** 0.5 if p.dim() > 1 else 0.5
            p.uniform_(-bound, bound)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    return model


@pytest.mark.parametrize("name", _marked(TORCHVISION_MODELS))
def test_forward_and_gradients_equal_torchvisions_in_float64(name):
    torch.manual_seed(0)
    ours = random_float64_model(name)
    theirs = torchvision_on_meta(name, num_classes=10)
    theirs.load_state_dict(ours.state_dict(), strict=True, assign=True)
    assert theirs.state_dict().keys() == ours.state_dict().keys()
    assert_same_model(ours, theirs, models.spec(name).check_size)


@pytest.mark.parametrize("variant", ["modern", "classic"])
def test_lenet5_equals_its_torch_layer_twin_in_float64(variant):
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        ours = models.lenet5(variant=variant)
    reference = to_torch(ours, inplace=False)
    assert not any(type(m).__module__ == "pycnn.nn" for m in reference.modules())
    assert_same_model(ours, reference, (1, 32, 32), batch=3)


# ----------------------------------------------------------------------------- LeNet-5

def test_lenet5_layers_have_the_textbook_shapes():
    model = models.lenet5()
    shapes = {}
    for name in ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT"]:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[1:]))
    model(torch.randn(2, 1, 32, 32))
    assert shapes == {"C1": (6, 28, 28), "S2": (6, 14, 14), "C3": (16, 10, 10), "S4": (16, 5, 5),
                      "C5": (120, 1, 1), "F6": (84,), "OUTPUT": (10,)}


def test_classic_lenet5_has_the_papers_parameter_counts():
    model = models.lenet5(variant="classic")
    per_layer = {name: count(getattr(model, name)) for name in ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT"]}
    assert per_layer == {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120, "F6": 10_164, "OUTPUT": 0}


def test_classic_c3_connects_the_maps_of_table_1():
    # Output map k of C3 depends on S2 map c exactly when Table I connects them.
    table = ["X---XXX--XXXX-XX", "XX---XXX--XXXX-X", "XXX---XXX--X-XXX",
             "-XXX--XXXX--X-XX", "--XXX--XXXX-XX-X", "---XXX--XXXX-XXX"]
    c3 = lenet.PartiallyConnectedConv2d(6, lenet.C3_CONNECTIONS, 5).double()
    x = torch.randn(1, 6, 14, 14, dtype=torch.float64)
    jacobian = torch.autograd.functional.jacobian(lambda t: c3(t).sum((0, 2, 3)), x)  # (16, 1, 6, 14, 14)
    depends = jacobian.abs().sum((1, 3, 4)) > 0
    assert depends.T.tolist() == [[mark == "X" for mark in row] for row in table]


def test_classic_c3_computes_each_map_from_its_inputs():
    c3 = lenet.PartiallyConnectedConv2d(6, lenet.C3_CONNECTIONS, 5).double()
    x = torch.randn(2, 6, 14, 14, dtype=torch.float64)
    weights = {}
    for conv, gather in zip(c3.convs, [c3.gather_0, c3.gather_1, c3.gather_2]):
        fan_in = conv.weight.shape[1]
        for j in range(conv.out_channels):
            weights[len(weights)] = (gather[j * fan_in:(j + 1) * fan_in], conv.weight[j], conv.bias[j])
    expected = torch.stack([torch.nn.functional.conv2d(x[:, idx], w[None], b[None])[:, 0]
                            for idx, w, b in (weights[k] for k in range(16))], 1)
    torch.testing.assert_close(c3(x), expected, rtol=1e-12, atol=1e-12)


def test_partially_connected_conv_restores_table_order():
    # Fan-ins 2, 1, 2: the two 2-input maps form one group; map 1 must stay in the middle.
    conv = lenet.PartiallyConnectedConv2d(3, [(0, 1), (2,), (1, 2)], 3).double()
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    y = conv(x)
    two, one = conv.convs
    torch.testing.assert_close(y[:, 1:2], torch.nn.functional.conv2d(x[:, 2:3], one.weight, one.bias))
    torch.testing.assert_close(y[:, 2:3], torch.nn.functional.conv2d(x[:, 1:3], two.weight[1:2], two.bias[1:2]))


def test_partially_connected_conv_rejects_bad_connections():
    with pytest.raises(ValueError, match=r"connections\[1\]=\(0, 7\)"):
        lenet.PartiallyConnectedConv2d(6, [(0,), (0, 7)], 5)


def test_classic_subsampling_is_a_scaled_tanh_of_coefficient_times_window_sum_plus_bias():
    s2 = lenet.TrainableSubsampling(6).double()
    x = torch.randn(2, 6, 28, 28, dtype=torch.float64)
    window_sum = x.unfold(2, 2, 2).unfold(3, 2, 2).sum((-1, -2))
    a = window_sum * s2.weight.view(-1, 1, 1) + s2.bias.view(-1, 1, 1)
    torch.testing.assert_close(s2(x), 1.7159 * torch.tanh(2 * a / 3), rtol=1e-12, atol=1e-12)
    assert lenet.scaled_tanh(torch.tensor(1.0)).item() == pytest.approx(1.0, abs=1e-4)


def test_classic_output_is_the_negated_euclidean_distance_to_fixed_plus_minus_one_prototypes():
    model = models.lenet5(variant="classic")
    rbf = model.OUTPUT
    assert set(rbf.prototypes.unique().tolist()) == {-1.0, 1.0}
    assert "OUTPUT.prototypes" in model.state_dict() and count(rbf) == 0
    x = torch.randn(3, 84)
    expected = -torch.stack([((x - w) ** 2).sum(1) for w in rbf.prototypes], 1)
    torch.testing.assert_close(rbf(x), expected)
    assert torch.equal(models.lenet5(variant="classic").OUTPUT.prototypes, rbf.prototypes)


def test_classic_weights_start_within_2_4_over_fan_in():
    model = models.lenet5(variant="classic")
    assert model.C1.weight.abs().max() <= 2.4 / 25
    assert model.C5.weight.abs().max() <= 2.4 / 400
    assert model.F6.weight.abs().max() <= 2.4 / 120


def test_lenet5_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="variant must be 'modern' or 'classic'.*'1989'"):
        models.lenet5(variant="1989")


def test_models_are_reachable_from_the_package():
    assert pycnn.models.resnet18 is models.resnet18
    assert "models" in dir(pycnn)


def test_import_pycnn_stays_light():
    code = ("import sys, pycnn; print([m for m in ('pycnn.models', 'pycnn.verify', 'pycnn.summary', "
            "'pycnn.convert', 'torchvision') if m in sys.modules])")
    root = os.path.dirname(os.path.dirname(os.path.abspath(pycnn.__file__)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, PYTHONPATH=root))
    assert result.stdout.strip() == "[]"
