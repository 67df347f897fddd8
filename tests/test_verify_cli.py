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
    # The first wrong layer is S2 (a max pool); C1 before it is right.
    failing = [line.split()[0] for line in result.stdout.splitlines() if line.endswith("FAIL") and
               not line.startswith("lenet5")]
    assert failing[0] == "S2" and "C1" not in failing


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
    assert "pycnn ops vs torch.nn.functional" in capsys.readouterr().out


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


def test_verify_a_users_module_with_a_broken_layer_fails_there():
    report = pycnn.verify(UserModel(Broken(2, 4, 3, padding=1)), input_size=(2, 8, 8), dtype=torch.float32)
    assert not report.passed
    first = next(r for r in report.layers if not r.passed)
    assert (first.case, first.tensor) == ("body.0", "output")
    assert not report.output.passed


def test_tolerances_are_stated_per_dtype():
    assert verify.MODEL_TOLERANCES[torch.float64] <= 1e-9
    assert verify.MODEL_TOLERANCES[torch.float32] <= 1e-3


def test_module_input_size_is_required():
    with pytest.raises(ValueError, match="input_size"):
        pycnn.verify(nn.Conv2d(1, 1, 1))
