"""pycnn.nn layers are drop-in torch.nn layers: same constructor arguments and
defaults, same state_dict keys, isinstance of the torch class, and a torch
layer's state_dict loaded into ours gives torch's outputs."""
import inspect
import pickle

import pytest
import torch

import pycnn

# name -> [(args, kwargs)]: every option away from its default at least once.
LAYERS = {
    "Conv2d": [((3, 8, 3), {}), ((3, 8, 3), dict(stride=2, padding=1, bias=False)),
               ((3, 8, 3), dict(padding="same", dilation=2, padding_mode="reflect")),
               ((4, 8, (3, 5)), dict(stride=(1, 2), groups=4, padding=(1, 2),
                                     padding_mode="circular"))],
    "MaxPool2d": [((3,), {}), ((3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True)),
                  ((2,), dict(return_indices=True))],
    "AvgPool2d": [((3,), {}), ((3,), dict(stride=(1, 2), padding=1, ceil_mode=True,
                                          count_include_pad=False, divisor_override=4))],
    "AdaptiveAvgPool2d": [(((3, None),), {}), ((1,), {})],
    "AdaptiveMaxPool2d": [(((3, 4),), {}), ((2,), dict(return_indices=True))],
}


def constructions(name):
    return LAYERS[name]


def input_for(name, args):
    channels = args[0] if name == "Conv2d" else 4
    return torch.randn(2, channels, 11, 12)


@pytest.mark.parametrize("name", list(LAYERS))
def test_constructor_signature_matches_torch(name):
    ours, theirs = getattr(pycnn.nn, name), getattr(torch.nn, name)
    assert inspect.signature(ours.__init__) == inspect.signature(theirs.__init__)
    assert issubclass(ours, theirs)


@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_are_torch_layers_with_torch_state(name):
    for args, kwargs in constructions(name):
        torch.manual_seed(0)
        theirs = getattr(torch.nn, name)(*args, **kwargs)
        torch.manual_seed(0)
        ours = getattr(pycnn.nn, name)(*args, **kwargs)
        assert isinstance(ours, getattr(torch.nn, name))
        assert repr(ours) == repr(theirs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for (k, a), (_, b) in zip(ours.state_dict().items(), theirs.state_dict().items()):
            assert a.shape == b.shape and torch.equal(a, b), f"{name}: {k} initialised differently"
        # Loading torch's (re-drawn) state gives torch's outputs.
        for p in theirs.parameters():
            torch.nn.init.normal_(p)
        ours.load_state_dict(theirs.state_dict())
        x = input_for(name, args)
        got, want = ours(x), theirs(x)
        if isinstance(want, tuple):
            torch.testing.assert_close(got[0], want[0])
            assert torch.equal(got[1], want[1])
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_state_dict_round_trip_into_torch():
    ours = pycnn.nn.Conv2d(3, 5, 3, padding=1)
    theirs = torch.nn.Conv2d(3, 5, 3, padding=1)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(1, 3, 8, 8)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_model_of_our_layers_trains_like_torch():
    """A model with our layers swapped in gives torch's gradients."""
    def model(lib):
        torch.manual_seed(1)
        return torch.nn.Sequential(lib.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(),
                                   lib.MaxPool2d(2), lib.Conv2d(6, 6, 3, groups=3, bias=False),
                                   lib.AvgPool2d(2, ceil_mode=True), lib.AdaptiveAvgPool2d(1))
    ours, theirs = model(pycnn.nn), model(torch.nn)
    x = torch.randn(2, 3, 13, 14)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_layers_pickle_and_deepcopy():
    import copy
    layer = pycnn.nn.Conv2d(3, 4, 3, padding_mode="replicate", padding=1)
    clone = pickle.loads(pickle.dumps(layer))
    assert type(clone) is pycnn.nn.Conv2d
    x = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(clone(x), layer(x))
    torch.testing.assert_close(copy.deepcopy(layer)(x), layer(x))


def test_unbatched_through_layers():
    x = torch.randn(3, 9, 9)
    conv = pycnn.nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular")
    ref = torch.nn.Conv2d(3, 4, 3, padding="same", padding_mode="circular")
    ref.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x), ref(x), rtol=1e-5, atol=1e-5)
    assert pycnn.nn.MaxPool2d(2)(x).shape == (3, 4, 4)


def test_conv2d_under_cpu_autocast_computes_in_float32():
    """pycnn's CPU kernels take float32 and float64 only, so CPU autocast
    (which would give torch's conv bfloat16) leaves pycnn's conv in float32:
    the same result as outside the region (README, "Mixed precision")."""
    torch.manual_seed(0)
    layer = pycnn.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(2, 3, 8, 8)
    plain = layer(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = layer(x)
    assert inside.dtype == torch.float32
    assert torch.equal(inside, plain)
