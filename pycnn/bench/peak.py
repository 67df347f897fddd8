"""What 100 % means: the machine's arithmetic peak and copy bandwidth.

On the CPU both are measured once per run: the fp32 multiply-add rate with
a compiled register-only loop (pycnn._C.fma_peak_gflops) on the benchmark's
threads, and the bandwidth of a large tensor copy.  On a GPU the vendor's
published dense figures are used when the card is known, and a quick
measurement (a large matmul and a large copy) otherwise.
"""
import dataclasses
import time

import torch

from .. import _extension

# Published dense peaks, in TFLOP/s, and memory bandwidth in GB/s (NVIDIA
# datasheets; tensor-core figures without sparsity).  Matched against
# torch.cuda.get_device_name() in order: more specific names first.
# float32 counts CUDA cores; "tf32", "float16" and "bfloat16" tensor cores;
# float64 the FP64 tensor cores.
GPU_PEAKS = [
    ("H100 NVL", dict(float64=60.0, float32=60.0, tf32=417.5, float16=835.5, bfloat16=835.5,
                      bandwidth_gbs=3900.0)),
    ("H100 PCIe", dict(float64=51.0, float32=51.0, tf32=378.0, float16=756.0, bfloat16=756.0,
                       bandwidth_gbs=2000.0)),
    ("H100", dict(float64=67.0, float32=67.0, tf32=494.5, float16=989.5, bfloat16=989.5,
                  bandwidth_gbs=3350.0)),  # SXM5, the default H100
    ("H200 NVL", dict(float64=60.0, float32=60.0, tf32=417.5, float16=835.5, bfloat16=835.5,
                      bandwidth_gbs=4800.0)),
    ("H200", dict(float64=67.0, float32=67.0, tf32=494.5, float16=989.5, bfloat16=989.5,
                  bandwidth_gbs=4800.0)),
]


@dataclasses.dataclass
class Peak:
    """100 % for this run: arithmetic in GFLOP/s for the run's dtype, and
    copy bandwidth (bytes read + written) in GB/s."""
    device: str
    dtype: str
    gflops: float
    bandwidth_gbs: float
    gflops_source: str
    bandwidth_source: str
    # Pooling inputs at least this large stream from memory rather than a
    # cache: they are the ones held to the copy bandwidth.
    large_input_bytes: int = 32 << 20
    fp32_fma_gflops: float = None  # CPU: the measured fp32 figure the dtype's peak derives from
    threads: int = None            # CPU: threads that ran the measurement together
    isa: str = None                # CPU: instruction set of the measurement loop

    def to_dict(self):
        return dataclasses.asdict(self)


def fma_peak_gflops(threads=None, seconds=0.5):
    """The fp32 multiply-add rate (GFLOP/s) that `threads` CPU threads sustain
    together with pycnn's active instruction set, and the number of threads
    that actually ran (torch's thread count caps it)."""
    threads = torch.get_num_threads() if threads is None else int(threads)
    return _extension._C.fma_peak_gflops(threads, float(seconds))


def copy_bandwidth_gbs(device="cpu", megabytes=256, repeats=5):
    """Bytes read + written per second by a large tensor copy (best of repeats)."""
    device = torch.device(device)
    elements = megabytes * (1 << 20) // 4
    source = torch.rand(elements, device=device)
    target = torch.empty_like(source)
    best = float("inf")
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        target.copy_(source)
        for _ in range(repeats):
            start.record()
            target.copy_(source)
            end.record()
            end.synchronize()
            best = min(best, start.elapsed_time(end) * 1e-3)
    else:
        target.copy_(source)  # first touch of the pages
        for _ in range(repeats):
            begin = time.perf_counter()
            target.copy_(source)
            best = min(best, time.perf_counter() - begin)
    return 2 * source.numel() * source.element_size() / best * 1e-9


def _cpu_dtype_factor(dtype):
    """Peak of `dtype` relative to fp32 on the CPU: float64 has half the lanes;
    reduced precisions are counted against fp32, the precision they
    accumulate in."""
    return 0.5 if dtype == torch.float64 else 1.0


def measure_cpu(threads, dtype=torch.float32, seconds=0.5, copy_megabytes=256):
    gflops, ran = fma_peak_gflops(threads, seconds)
    factor = _cpu_dtype_factor(dtype)
    source = f"measured: fp32 FMA loop, {_extension.cpu_isa()}, {ran} thread(s)"
    if factor != 1.0:
        source += f", x{factor} for {str(dtype).replace('torch.', '')}"
    return Peak(device="cpu", dtype=str(dtype).replace("torch.", ""), gflops=gflops * factor,
                bandwidth_gbs=copy_bandwidth_gbs("cpu", copy_megabytes),
                gflops_source=source, bandwidth_source=f"measured: {copy_megabytes} MiB tensor copy",
                fp32_fma_gflops=gflops, threads=ran, isa=_extension.cpu_isa())


def published_gpu_peak(name):
    for key, figures in GPU_PEAKS:
        if key.lower() in name.lower():
            return key, figures
    return None, None


def _precision_key(dtype, tf32):
    if dtype == torch.float32:
        return "tf32" if tf32 else "float32"
    return str(dtype).replace("torch.", "")


def matmul_gflops(device, dtype, size=8192, repeats=3):
    """A large matmul's rate: what the card's math units deliver in `dtype`
    (with the process's TF32 setting for float32)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start.record()
        torch.mm(a, b)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    return 2 * size ** 3 / best * 1e-9


def _gpu_large_input_bytes(device):
    """Four times the L2 cache (50 MiB on an H100), at least 128 MiB."""
    l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0
    return max(4 * l2, 128 << 20)


def measure_cuda(device="cuda", dtype=torch.float32, tf32=False):
    name = torch.cuda.get_device_name(device)
    large = _gpu_large_input_bytes(device)
    key, figures = published_gpu_peak(name)
    precision = _precision_key(dtype, tf32)
    measured_copy = copy_bandwidth_gbs(device, megabytes=1024)
    if figures is not None:
        return Peak(device=name, dtype=precision, gflops=figures[precision] * 1e3,
                    bandwidth_gbs=figures["bandwidth_gbs"],
                    gflops_source=f"published: {key} dense {precision}",
                    bandwidth_source=f"published: {key} (a 1 GiB copy measured {measured_copy:.0f} GB/s)",
                    large_input_bytes=large)
    return Peak(device=name, dtype=precision, gflops=matmul_gflops(device, dtype),
                bandwidth_gbs=measured_copy,
                gflops_source=f"measured: 8192^3 torch.mm in {precision} (card not in the table)",
                bandwidth_source="measured: 1 GiB tensor copy", large_input_bytes=large)


def measure(device, threads, dtype, seconds=0.5, tf32=False, copy_megabytes=256):
    if torch.device(device).type == "cuda":
        return measure_cuda(device, dtype, tf32)
    return measure_cpu(threads, dtype, seconds, copy_megabytes)
