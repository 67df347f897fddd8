"""Where a benchmark ran: machine, software versions and source commit, so
that a saved result can be compared with another."""
import datetime
import os
import platform
import subprocess

import torch

from .. import _extension


def cpu_model():
    """The CPU's marketing name from /proc/cpuinfo (Linux), else platform's guess."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit():
    """(commit, whether the tree has uncommitted changes) of the source tree
    pycnn was imported from, or (None, None) outside a git checkout."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None, None
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None, None


def collect(device, threads):
    from .. import __version__
    commit, dirty = git_commit()
    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "threads": threads,
        "cpu_isa": _extension.cpu_isa(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "pycnn": __version__,
        "pycnn_cuda_compiled": _extension.cuda_compiled(),
        "commit": commit,
        "commit_dirty": dirty,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if torch.device(device).type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update({
            "gpu": props.name,
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(),
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        })
    return env
