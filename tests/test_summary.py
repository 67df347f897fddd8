"""pycnn.summary: one row per layer with shapes, options, parameters and
multiply-adds, then the totals."""
import pytest
import torch
from torch import nn

import pycnn
from pycnn import cli, models
from pycnn import functional as F


def test_lenet5_rows_are_the_textbook_table():
    s = pycnn.summary(models.lenet5(), (1, 32, 32))
    table = [(r.name, r.type, r.output_shape, r.kernel, r.params, r.multiply_adds) for r in s.rows]
    assert table == [
        ("C1", "Conv2d", "6@28x28", "5x5", 156, 28 * 28 * 6 * 25),
        ("S2", "MaxPool2d", "6@14x14", "2x2", 0, 0),
        ("C3", "Conv2d", "16@10x10", "5x5", 2_416, 10 * 10 * 16 * 6 * 25),
        ("S4", "MaxPool2d", "16@5x5", "2x2", 0, 0),
        ("C5", "Conv2d", "120@1x1", "5x5", 48_120, 120 * 16 * 25),
        ("F6", "Linear", "84", "", 10_164, 120 * 84),
        ("OUTPUT", "Linear", "10", "", 850, 84 * 10),
    ]
    assert [r.input_shape for r in s.rows][:2] == ["1@32x32", "6@28x28"]
    assert [r.stride for r in s.rows][:2] == ["1", "2"] and s.rows[0].padding == "0"
    assert [r.pycnn for r in s.rows] == [True] * 5 + [False] * 2
    assert s.total_params == 61_706 and s.total_multiply_adds == sum(r.multiply_adds for r in s.rows)


def test_classic_lenet5_rows_have_the_papers_parameters():
    s = pycnn.summary("lenet5_classic")
    assert [(r.name, r.params) for r in s.rows] == [
        ("C1", 156), ("S2", 12), ("C3", 1_516), ("S4", 32), ("C5", 48_120), ("F6", 10_164), ("OUTPUT", 0)]
    assert [r.output_shape for r in s.rows] == ["6@28x28", "6@14x14", "16@10x10", "16@5x5", "120@1x1", "84", "10"]
    # C3's three grouped convolutions count as its connections: 60 of 96 (input, output) map pairs.
    assert s.row("C3").multiply_adds == 60 * 25 * 100
    assert s.row("S2").multiply_adds == 6 * 14 * 14 and s.row("OUTPUT").multiply_adds == 10 * 84


def test_resnet34_totals():
    s = pycnn.summary("resnet34")
    assert s.input_size == (1, 3, 224, 224) and s.ran_on == "meta"
    assert s.total_params == 21_797_672 == s.trainable_params
    assert s.total_multiply_adds == 3_663_761_408  # the published 3.6 G
    assert s.row("fc").multiply_adds == 512 * 1000 and s.row("layer4.2.conv2").output_shape == "512@7x7"
    # BasicBlock calls its ReLU twice: two rows, one module.
    assert [r.name for r in s.rows].count("layer1.0.relu") == 2


def test_a_batch_multiplies_the_multiply_adds():
    one = pycnn.summary("squeezenet1_1", (3, 64, 64))
    four = pycnn.summary("squeezenet1_1", (4, 3, 64, 64))
    assert four.total_multiply_adds == 4 * one.total_multiply_adds and four.total_params == one.total_params


def test_grouped_convolution_multiply_adds():
    s = pycnn.summary(nn.Conv2d(8, 16, 3, groups=4, padding=1, stride=2), (8, 10, 10))
    (row,) = s.rows
    assert row.multiply_adds == 16 * 5 * 5 * (8 // 4) * 9 and row.stride == "2" and row.padding == "1"


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1))  # held outside any layer

    def forward(self, x):
        return self.conv(self.conv(x)) * self.scale


def test_a_layer_called_twice_counts_its_parameters_once():
    s = pycnn.summary(Twice(), (4, 8, 8))
    assert [(r.name, r.params, r.shared) for r in s.rows] == [("conv", 148, False), ("conv", 0, True)]
    assert s.total_params == 149 and s.total_multiply_adds == 2 * 64 * 4 * 4 * 9
    text = str(s)
    assert "(shared)" in text and "1 held outside the layers listed" in text


class DataDependent(nn.Module):
    """A forward the meta device cannot run (it reads a value)."""

    def __init__(self):
        super().__init__()
        self.conv = pycnn.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x) if x.sum().item() != 0.5 else x


def test_falls_back_to_the_models_device_and_restores_the_model():
    model = DataDependent().train()
    weight = model.conv.weight.detach().clone()
    s = pycnn.summary(model, (3, 9, 9))
    assert s.ran_on == "cpu" and [r.output_shape for r in s.rows] == ["4@7x7"]
    assert model.training and model.conv.weight.device.type == "cpu" and torch.equal(model.conv.weight, weight)
    assert not model.conv._forward_hooks and not model.conv._forward_pre_hooks


def test_input_size_is_checked():
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\) or \(N, C, H, W\), got input_size=\(32, 32\)"):
        pycnn.summary(models.lenet5(), (32, 32))
    with pytest.raises(ValueError, match="input_size is required"):
        pycnn.summary(models.lenet5())


def test_pycnn_ops_run_on_the_meta_device_with_default_arguments():
    # The meta dispatch drops trailing arguments equal to the schema's defaults.
    x = torch.empty(2, 3, 11, 11, device="meta", requires_grad=True)
    w = torch.empty(4, 3, 3, 3, device="meta", requires_grad=True)
    assert F.conv2d(x, w).shape == (2, 4, 9, 9)
    assert F.max_pool2d(x, 2).shape == (2, 3, 5, 5)
    assert F.avg_pool2d(x, 2).shape == (2, 3, 5, 5)
    F.conv2d(x, w).sum().backward()
    assert x.grad.shape == x.shape and w.grad.shape == w.shape


def test_command_line_prints_the_table(capsys):
    assert cli.main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "lenet5: input 1@32x32, batch 1"
    c3 = next(line for line in lines if line.startswith("C3 "))
    assert c3.split() == ["C3", "Conv2d*", "6@14x14", "16@10x10", "5x5", "1", "0", "2,416", "240,000"]
    assert "61,706" in out and "416,520" in out


def test_command_line_options_and_errors(capsys):
    assert cli.main(["summary", "resnet18", "--input-size", "3", "64", "64", "--batch", "2",
                     "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("resnet18: input 3@64x64, batch 2") and "fc      " in out
    assert cli.main(["summary", "resnet19"]) == 2
    assert "unknown model 'resnet19'" in capsys.readouterr().err
    assert cli.main(["summary", "--list"]) == 0
    assert "squeezenet1_1" in capsys.readouterr().out
