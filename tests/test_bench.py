"""The benchmark suite: runs end to end on tiny shapes, reports sane numbers,
writes its JSON and chart.  Speed itself is never asserted."""
import json
import math

import pytest
import torch

import pycnn
from pycnn import cli
from pycnn.bench import benchmark, cases, peak, select_cases, timing, verdict
from pycnn.bench.runner import Result

ISAS = ("generic", "avx2", "avx512")


def _supported_isas():
    active = pycnn.cpu_isa()
    return ISAS[:ISAS.index(active) + 1]


@pytest.mark.parametrize("isa", ISAS)
def test_fma_peak_is_a_plausible_rate_for_every_isa(isa):
    if isa not in _supported_isas():
        pytest.skip(f"this CPU (or PYCNN_CPU_ISA) stops at {pycnn.cpu_isa()}")
    active = pycnn.cpu_isa()
    try:
        pycnn.set_cpu_isa(isa)
        gflops, threads = peak.fma_peak_gflops(1, 0.02)
    finally:
        pycnn.set_cpu_isa(active)
    assert threads == 1
    # Any CPU of the last twenty years: above 0.1 GFLOP/s, below 10 TFLOP/s per core.
    assert 0.1 < gflops < 1e4


def test_fma_peak_rejects_bad_arguments():
    with pytest.raises(ValueError, match="threads"):
        peak.fma_peak_gflops(0, 0.01)
    with pytest.raises(ValueError, match="seconds"):
        peak.fma_peak_gflops(1, 0.0)


def test_stats_median_and_quartiles():
    stats = timing.Stats([4.0, 1.0, 3.0, 2.0, 5.0])
    assert stats.median == 3.0
    assert stats.quantile(0.25) == 2.0 and stats.quantile(0.75) == 4.0
    assert stats.relative_spread == pytest.approx(2.0 / 3.0)
    assert (stats.min, stats.max) == (1.0, 5.0)


def test_compare_interleaves_and_counts_samples():
    calls = []
    stats = timing.compare({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                           warmup=1, repeats=4)
    assert len(stats["a"].samples) == len(stats["b"].samples) == 4
    timed = calls[4:]  # after one warm-up call each and one calibration call each
    assert timed == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_time_budget_cuts_the_repeats_of_slow_cases():
    import time
    slow = {"a": lambda: time.sleep(0.01), "b": lambda: time.sleep(0.01)}
    stats = timing.compare(slow, warmup=0, repeats=10, budget_s=0.05)
    assert len(stats["a"].samples) == len(stats["b"].samples) == 3  # the floor
    stats = timing.compare({"a": lambda: None, "b": lambda: None}, repeats=10, budget_s=0.05)
    assert len(stats["a"].samples) == 10


def test_default_set_holds_the_issue_layers():
    chosen, scope = select_cases("cpu")
    assert scope == "default"
    convs = {c.name: c for c in chosen if c.group == "conv"}
    expect = {  # name: (N, C, H, W, K, kernel, stride, padding)
        "LeNet-5 C1": (64, 1, 32, 32, 6, 5, 1, 0),
        "LeNet-5 C3": (64, 6, 14, 14, 16, 5, 1, 0),
        "AlexNet conv1": (8, 3, 224, 224, 64, 11, 4, 2),
        "AlexNet conv2": (8, 64, 27, 27, 192, 5, 1, 2),
        "VGG-16 conv1_2": (2, 64, 224, 224, 64, 3, 1, 1),
        "VGG-16 conv3_2": (8, 256, 56, 56, 256, 3, 1, 1),
        "VGG-16 conv5": (8, 512, 14, 14, 512, 3, 1, 1),
        "ResNet stem": (8, 3, 224, 224, 64, 7, 2, 3),
        "ResNet layer1": (8, 64, 56, 56, 64, 3, 1, 1),
        "ResNet layer3": (8, 256, 14, 14, 256, 3, 1, 1),
        "ResNet-50 1×1 bottleneck": (8, 256, 56, 56, 64, 1, 1, 0),
    }
    assert set(expect) <= set(convs)
    for name, (n, c, h, w, k, r, s, p) in expect.items():
        case = convs[name]
        got = (case.batch, case.in_channels, case.height, case.width, case.out_channels,
               case.kernel, case.stride, case.padding)
        assert got == (n, c, h, w, k, (r, r), (s, s), (p, p)), name
    assert {n for n, c in convs.items() if c.large} == {
        "VGG-16 conv3_2", "VGG-16 conv5", "ResNet layer1", "ResNet layer3", "AlexNet conv2"}
    pool_ops = {c.op for c in chosen if c.group == "pool"}
    assert pool_ops == set(cases.POOL_OPS)
    assert {(c.model, c.batch) for c in chosen if c.group == "train"} == {("lenet5", 256),
                                                                         ("resnet18", 8)}


def test_conv_flops_and_pool_bytes_follow_the_conventions():
    vgg = next(c for c in select_cases("cpu")[0] if c.name == "VGG-16 conv3_2")
    assert vgg.flops("forward") == 2 * 8 * 256 * 56 * 56 * 256 * 3 * 3
    assert vgg.flops("backward") == 2 * vgg.flops("forward")
    assert vgg.flops("both") == 3 * vgg.flops("forward")
    grouped = cases.ConvCase("g", "m", 2, 8, 10, 10, 4, (3, 3), stride=(2, 2), groups=2)
    assert grouped.output_size == (4, 4)
    assert grouped.flops("forward") == 2 * 2 * 4 * 4 * 4 * (8 // 2) * 9
    pool = cases.PoolCase("p", "m", "max_pool2d", 2, 4, 12, 12, kernel=(3, 3), stride=(2, 2),
                          padding=(1, 1))
    assert pool.output_size == (6, 6)
    n_in, n_out = 2 * 4 * 12 * 12, 2 * 4 * 6 * 6
    assert pool.bytes_moved("forward", 4) == (n_in + n_out) * 4 + n_out * 8
    assert pool.bytes_moved("forward", 4, inference=True) == (n_in + n_out) * 4
    assert pool.bytes_moved("backward", 4) == (n_out + n_in) * 4 + n_out * 8
    adaptive = cases.PoolCase("p", "m", "adaptive_max_pool2d", 2, 4, 12, 12, output=(6, 6))
    assert adaptive.bytes_moved("forward", 4, inference=True) == (n_in + n_out) * 4 + n_out * 8
    avg = cases.PoolCase("a", "m", "avg_pool2d", 2, 4, 12, 12, kernel=(2, 2))
    assert avg.bytes_moved("backward", 4) == (2 * 4 * 6 * 6 + n_in) * 4


def test_model_cases_take_every_distinct_layer_of_resnet18():
    chosen, scope = select_cases(model="resnet18", batch=2)
    assert scope == "layers of resnet18"
    convs = [c for c in chosen if c.group == "conv"]
    pools = [c for c in chosen if c.group == "pool"]
    # 20 conv layers in 11 distinct shapes; one max pool and the global average pool.
    assert sum(c.count for c in convs) == 20 and len(convs) == 11
    stem = convs[0]
    assert (stem.batch, stem.in_channels, stem.height, stem.kernel, stem.stride, stem.padding) == \
        (2, 3, 224, (7, 7), (2, 2), (3, 3))
    assert next(c for c in convs if c.name == "resnet18 layer1.0.conv1").count == 4
    assert [(p.op, p.height) for p in pools] == [("max_pool2d", 112), ("adaptive_avg_pool2d", 7)]
    assert [c.model for c in chosen if c.group == "train"] == ["resnet18"]


def _quick_report(**options):
    settings = dict(quick=True, threads=1, repeats=2, warmup=1, peak_seconds=0.02)
    settings.update(options)
    return benchmark(**settings)


def test_quick_run_through_the_python_api():
    report = _quick_report(ops=["conv2d", "max_pool2d", "train"], filters=["conv 3×3", "max pool", "LeNet"])
    by_key = {(r.case.name, r.layout, r.pass_): r for r in report.results}
    assert set(by_key) == {("tiny conv 3×3", "nchw", p) for p in ("forward", "backward", "both")} | \
        {("tiny max pool", layout, p) for layout in ("nchw", "channels_last")
         for p in ("forward", "backward", "both")} | {("LeNet-5 train step", "nchw", "step")}
    for r in report.results:
        assert r.error is None, r.error
        assert r.agrees, (r.case.name, r.max_rel_diff)
        assert len(r.pycnn.samples) == len(r.torch.samples) == 2
        assert all(s > 0 for s in r.pycnn.samples + r.torch.samples)
        assert r.ratio == pytest.approx(r.torch.median / r.pycnn.median)
    conv = by_key[("tiny conv 3×3", "nchw", "both")]
    assert conv.work == 3 * 2 * 2 * 8 * 12 * 12 * 4 * 9
    assert report.percent_of_peak(conv, "pycnn") == pytest.approx(
        100 * conv.work / conv.pycnn.median / (report.peak.gflops * 1e9))
    assert by_key[("LeNet-5 train step", "nchw", "step")].work == 4
    assert report.peak.gflops > 0 and report.peak.bandwidth_gbs > 0

    table = report.table()
    for text in ("conv2d:", "pooling:", "training steps:", "tiny conv 3×3", "tiny max pool",
                 "NHWC", "fwd+bwd", "GFLOP/s", "GB/s", "images/s", "verdict", "torch/pycnn"):
        assert text in table, text
    names = [t.name for t in report.targets]
    assert "conv2d forward, geomean" in names and "training step LeNet-5" in names
    assert next(t for t in report.targets if t.name == "training step ResNet-18").holds is None


def test_conv2d_relu_times_the_fused_op_outside_the_conv_targets():
    """--ops conv2d_relu: each convolution with its ReLU fused, against
    torch's conv2d and in-place ReLU, checked for agreement; the conv2d
    targets are not judged on it."""
    report = _quick_report(ops=["conv2d_relu"], filters=["conv 3×3"])
    assert {(r.case.name, r.case.op) for r in report.results} == {("tiny conv 3×3 + ReLU", "conv2d_relu")}
    for r in report.results:
        assert r.error is None and r.agrees, (r.pass_, r.error, r.max_rel_diff)
    leaves, ours, theirs = report.results[0].case.make("cpu", torch.float64, False)
    assert (torch.nn.functional.conv2d(*leaves, padding=1) < 0).any()
    torch.testing.assert_close(ours(*leaves), theirs(*[t.detach() for t in leaves]), rtol=1e-12, atol=1e-12)
    assert next(t for t in report.targets if t.name == "conv2d forward, geomean").holds is None
    assert {r.case.op for r in _quick_report(filters=["conv 3×3"]).results} == {"conv2d"}


def test_bad_options_name_the_option():
    with pytest.raises(ValueError, match="unknown op 'nope'"):
        benchmark(ops="conv2d,nope", quick=True)
    with pytest.raises(ValueError, match="dtype"):
        benchmark(dtype="int8", quick=True)
    with pytest.raises(ValueError, match="layout"):
        benchmark(layout="nhwc", quick=True)
    with pytest.raises(ValueError, match="repeats"):
        benchmark(repeats=0, quick=True)


def _result(name, group, pass_, pycnn_s, torch_s, layout="nchw", bandwidth_share=None,
            **case_options):
    """A timed result; torch_s = None with bandwidth_share: torch's time set
    so that it moves that share of test_verdict's fake copy bandwidth."""
    if group == "conv":
        case = cases.ConvCase(name, "m", 1, 4, 8, 8, 4, (3, 3), **case_options)
    elif group == "pool":
        case = cases.PoolCase(name, "m", case_options.pop("op", "max_pool2d"), 1, 4, 8, 8,
                              kernel=(2, 2), **case_options)
    else:
        case = cases.TrainCase(name, case_options["model"], 4, (1, 32, 32), 10)
    work = case.work(pass_, torch.float32)
    if bandwidth_share is not None:  # against FAKE_BANDWIDTH_BYTES_S
        torch_s = work / (bandwidth_share * FAKE_BANDWIDTH_BYTES_S)
        pycnn_s = torch_s / 1.1
    return Result(case, layout, pass_, work, timing.Stats([pycnn_s]), timing.Stats([torch_s]),
                  agrees=True)


FAKE_BANDWIDTH_BYTES_S = 1e3  # test_verdict's fake peak: 1e-6 GB/s


def test_verdict_checks_each_target():
    fake_peak = peak.Peak("cpu", "float32", gflops=1e-6, bandwidth_gbs=1e-6,
                          gflops_source="test", bandwidth_source="test")
    results = [
        _result("a", "conv", "forward", 1.0, 1.3),           # 1.3x
        _result("b", "conv", "forward", 1.0, 0.8, large=True),  # 0.8x
        _result("a", "conv", "both", 1.0, 1.5),
        _result("b", "conv", "both", 1.0, 0.75),              # under 0.8
        _result("p", "pool", "forward", 1.0, 12.0),          # torch at 15 % of the bandwidth
        _result("p", "pool", "backward", 4.0, 8.0),           # 22 %: counts, and is under 3x
        # torch at 1/2 of the copy bandwidth: 3x would exceed it, so not counted
        _result("r", "pool", "backward", 1.0, 1.1, bandwidth_share=0.5),
        _result("q", "pool", "forward", 1.0, 1.5, layout="channels_last", op="avg_pool2d"),
        _result("t", "train", "step", 1.0, 1.1, model="lenet5"),
    ]
    targets = {t.name: t for t in verdict.evaluate(results, fake_peak)}
    assert targets["conv2d forward, geomean"].holds is True     # sqrt(1.3 * 0.8) = 1.02
    assert targets["conv2d forward, every layer"].holds is True
    assert "0.80×" in targets["conv2d forward, every layer"].value
    assert targets["conv2d forward, large layers"].holds is True  # 10 kflop/s against a 1 kflop/s peak
    assert targets["conv2d forward+backward, geomean"].holds is False  # sqrt(1.5 * .75) = 1.06
    assert targets["conv2d forward+backward, every layer"].holds is False
    assert targets["pooling never slower (every op, layout, fwd, bwd)"].holds is True
    slow = targets["NCHW max pool where torch is slow (< 1/3 copy bandwidth)"]
    assert slow.holds is False and "2.00×" in slow.value  # p's backward; r does not count
    assert targets["training step LeNet-5"].holds is True
    assert targets["training step ResNet-18"].holds is None
    assert targets["outputs agree with torch"].holds is True

    results[0].error = "RuntimeError: boom"
    results[0].pycnn = None
    targets = {t.name: t for t in verdict.evaluate(results, fake_peak)}
    assert targets["conv2d forward, geomean"].holds is False
    assert "a" in targets["conv2d forward, geomean"].detail
    assert verdict.geomean([2.0, 8.0]) == pytest.approx(4.0)


def test_cli_prints_the_table_and_writes_json_and_png(tmp_path, capsys):
    json_path, png_path = tmp_path / "bench.json", tmp_path / "ratios.png"
    status = cli.main(["bench", "--quick", "--threads", "1", "--ops", "conv2d,adaptive_avg_pool2d",
                       "--filter", "1×1", "--filter", "adaptive avg", "--repeats", "2",
                       "--peak-seconds", "0.02", "--no-progress",
                       "--json", str(json_path), "--plot", str(png_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "tiny conv 1×1" in out and "tiny adaptive avg" in out and "verdict" in out

    document = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(c))
    assert document["schema"] == "pycnn-bench/1"
    env = document["environment"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    assert env["pycnn"] == pycnn.__version__ and env["cpu_isa"] == pycnn.cpu_isa()
    assert env["cpu"]
    assert document["peak"]["gflops"] > 0 and document["peak"]["bandwidth_gbs"] > 0
    assert document["options"]["repeats"] == 2
    rows = document["results"]
    assert {r["name"] for r in rows} == {"tiny conv 1×1", "tiny adaptive avg"}
    assert len(rows) == 3 + 3 * 2  # conv passes; pool passes in both layouts
    for row in rows:
        assert row["error"] is None and row["agrees"] is True
        median = row["pycnn"]["median_s"]
        assert row["pycnn"]["min_s"] <= median <= row["pycnn"]["max_s"]
        scale = 1e-9  # GFLOP/s and GB/s
        assert row["pycnn_rate"] == pytest.approx(row["work"] / median * scale)
        assert row["ratio"] == pytest.approx(row["torch"]["median_s"] / median)
        assert row["rate_unit"] == {"conv": "GFLOP/s", "pool": "GB/s"}[row["group"]]
    assert {t["status"] for t in document["verdict"]["targets"]} <= {"holds", "FAILS", "not measured"}

    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_reports_an_unknown_model(capsys):
    assert cli.main(["bench", "--model", "no_such_net", "--no-progress", "--peak-seconds", "0.01"]) == 2
    assert "no_such_net" in capsys.readouterr().err


def test_layer_errors_are_reported_not_raised():
    bad = cases.ConvCase("bad conv", "m", 1, 4, 8, 8, 6, (3, 3), groups=4)  # 6 % 4 != 0
    report = benchmark(cases=[bad], threads=1, repeats=1, warmup=0, peak_seconds=0.01, quick=True)
    assert len(report.results) == 3
    assert all(r.error and r.ratio is None for r in report.results)
    assert "error:" in report.table()
    assert math.isfinite(json.loads(json.dumps(report.to_dict()))["peak"]["gflops"])


@pytest.mark.parametrize("name, key", [("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA H100 PCIe", "H100 PCIe"),
                                       ("NVIDIA H100 NVL", "H100 NVL"), ("NVIDIA H200", "H200"),
                                       ("NVIDIA GeForce RTX 4090", None)])
def test_published_gpu_peaks_match_the_card_name(name, key):
    found, figures = peak.published_gpu_peak(name)
    assert found == key
    if key is not None:
        assert figures["float16"] > figures["tf32"] > figures["float32"] > 0
        assert figures["bandwidth_gbs"] >= 2000


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or not pycnn.cuda_compiled(),
                    reason="needs a CUDA GPU and pycnn built with CUDA")
def test_quick_run_on_cuda(tmp_path):
    report = benchmark(device="cuda", quick=True, ops=["conv2d", "max_pool2d", "train"],
                       filters=["conv 3×3", "max pool", "LeNet"], repeats=2)
    assert report.peak.gflops > 1e3 and report.peak.bandwidth_gbs > 100
    assert report.environment["gpu"] == torch.cuda.get_device_name()
    assert len(report.results) == 3 + 6 + 1
    for r in report.results:
        assert r.error or (r.ratio > 0 and len(r.pycnn.samples) == 2), r.case.name
    assert "TFLOP/s" in report.table()
    report.save_json(tmp_path / "cuda.json")
