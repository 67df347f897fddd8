"""pycnn.verify and `python -m pycnn verify`: models against torch's reference,
per layer and in total, and a non-zero exit status on any failure."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import pycnn
import pycnn.nn as pnn
from pycnn import cli, verify

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The bug planted in the tests below: a max pool whose output is off by one
# part in a million, far above float64's tolerance and far below what a look
# at the numbers would show.
BROKEN_MAX_POOL = """
import sys
import pycnn.nn
forward = pycnn.nn.MaxPool2d.forward
pycnn.nn.MaxPool2d.forward = lambda self, x: forward(self, x) * (1 + 1e-6)
from pycnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def python(*args, code=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable] + (["-c", code] if code else ["-m", "pycnn"]) + list(args)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)


def test_command_line_passes_a_correct_model():
    result = python("verify", "lenet5", "--dtype", "float64")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "lenet5  same model, torch's layers  float64  2x1@32x32" in result.stdout
    assert "1/1 model checks within tolerance" in result.stdout


def test_command_line_fails_on_a_broken_layer_and_names_it():
    result = python("verify", "lenet5", "--dtype", "float64", code=BROKEN_MAX_POOL)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL" in result.stdout and "0/1 model checks within tolerance" in result.stdout
    # The first wrong output is S2's (the max pool); C1's, before it, is right,
    # while C1's output gradient, which flows back through S2, is wrong too.
    failing = [line.split()[:2] for line in result.stdout.splitlines() if line.endswith("FAIL") and
               not line.startswith("lenet5")]
    assert [layer for layer, tensor in failing if tensor == "output"][0] == "S2"
    assert ["C1", "output"] not in failing and ["C1", "grad_output"] in failing


def test_per_layer_table_lists_every_layer(capsys):
    assert cli.main(["verify", "lenet5_classic", "--dtype", "float64", "--per-layer"]) == 0
    out = capsys.readouterr().out
    for layer in ["C1", "S2", "C3", "S4", "C5", "F6", "OUTPUT"]:
        assert any(line.split()[:2] == [layer, "output"] for line in out.splitlines()), layer
    assert "convs.1.weight.grad" in out and "grad_output" in out


def test_unknown_target_is_a_usage_error(capsys):
    assert cli.main(["verify", "resnet19"]) == 2
    assert "unknown target 'resnet19'" in capsys.readouterr().err


def test_ops_still_verify(capsys):
    assert cli.main(["verify", "ops", "--dtype", "float64"]) == 0
    out = capsys.readouterr().out
    assert "pycnn ops vs torch.nn.functional" in out
    assert "conv2d_relu" in out


def test_verify_a_model_name_reports_totals_and_layers():
    report = pycnn.verify("squeezenet1_1", dtype=torch.float64, batch=1)
    assert report.passed and report.reference == "torchvision.models.squeezenet1_1"
    assert report.input_shape == (1, 3, 64, 64)
    assert len(report.parameters) == 52 and {p.case for p in report.parameters} >= {"classifier.1.weight"}
    layers = {r.case for r in report.layers}
    assert {"features.0", "features.3.expand3x3", "classifier.3"} <= layers
    assert max(r.max_rel for r in report.rows) < 1e-12
    assert "features.3.expand3x3" in str(report)


class Broken(pnn.Conv2d):
    """A pycnn layer with a bug: it ignores its bias."""

    def forward(self, x):
        return super().forward(x) - self.bias.view(-1, 1, 1)


class UserModel(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.body = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(2))
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.head(self.body(x).flatten(1))


def test_verify_a_users_module_against_torchs_layers():
    report = verify.verify_model(UserModel(nn.Conv2d(2, 4, 3, padding=1)), input_size=(2, 8, 8))
    assert report.passed and report.reference == "same model, torch's layers"
    assert [r.case for r in report.layers if r.tensor == "output"] == ["body.0", "body.1", "body.2", "head"]


@pytest.mark.parametrize("dtype, first_failure", [(torch.float64, "output"), (torch.float32, "alone: output")])
def test_verify_a_users_module_with_a_broken_layer_fails_there(dtype, first_failure):
    report = pycnn.verify(UserModel(Broken(2, 4, 3, padding=1)), input_size=(2, 8, 8), dtype=dtype)
    assert not report.passed and not report.output.passed
    first = next(r for r in report.layers + report.isolated if not r.passed)
    assert (first.case, first.tensor) == ("body.0", first_failure)


def test_float32_judges_the_output_and_each_pycnn_layer_alone():
    report = pycnn.verify("lenet5", dtype=torch.float32)
    assert report.passed and report.output.judged
    assert not report.grad_input.judged and not any(r.judged for r in report.parameters + report.layers)
    alone = {(r.case, r.tensor) for r in report.isolated}
    assert {("C1", "alone: output"), ("S2", "alone: grad_input"), ("C5", "alone: weight.grad")} <= alone
    assert not any(case in ("F6", "OUTPUT") for case, _ in alone)  # torch's own layers on both sides
    assert all(r.judged and r.max_rel < verify.ISOLATED_TOLERANCES[torch.float32] for r in report.isolated)


def test_zoo_models_are_checked_with_fresh_shared_weights():
    torch.manual_seed(0)
    name, ours, reference, description, size = verify.build_pair("resnet18", torch.float32)
    assert description == "torchvision.models.resnet18" and size == (3, 33, 33)
    for (key, a), b in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(a, b), key
    assert ours.conv1.weight.data_ptr() == reference.conv1.weight.data_ptr()
    assert ours.conv1.weight is not reference.conv1.weight
    assert ours.bn1.running_mean.data_ptr() != reference.bn1.running_mean.data_ptr()
    assert ours.bn1.weight.min() >= 0.5 and ours.bn1.weight.max() <= 1.5
    assert (ours.fc.bias != 0).all() and ours.conv1.weight.abs().max() <= (6 / (3 * 49)) ** 0.5


def test_a_nan_or_an_infinity_never_passes():
    reference = torch.randn(1000, dtype=torch.float64)
    for bad in (float("nan"), float("inf")):
        ours = reference.clone()
        ours[500] = bad
        row = verify.compare("case", "output", ours, reference, 1e-9, "cpu")
        assert row.max_abs == float("inf") and not row.passed


def test_a_parameter_gradient_is_measured_against_its_layers_gradients():
    # The bias of a convolution before batch norm: a gradient of rounding noise.
    row = verify.compare("conv.bias", "grad", torch.tensor([3e-16]), torch.tensor([1e-16]), 1e-9, "cpu",
                         scale=2.0)
    assert row.passed and row.max_rel == pytest.approx(1e-16)
    assert not verify.compare("conv.bias", "grad", torch.tensor([3e-16]), torch.tensor([1e-16]), 1e-9,
                              "cpu").passed


def test_module_input_size_is_required():
    with pytest.raises(ValueError, match="input_size"):
        pycnn.verify(nn.Conv2d(1, 1, 1))
