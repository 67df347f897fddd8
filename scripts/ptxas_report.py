"""The CUDA compiler's resource report for every pycnn kernel: registers,
stack frame, spills and shared memory, one line per kernel.

    python scripts/ptxas_report.py            # recompiles csrc/ops/cuda (in place) to get it
    python scripts/ptxas_report.py BUILD_LOG  # reads a log of a PYCNN_PTXAS_VERBOSE=1 build

Exits 1 when a kernel spills to local memory or has a stack frame.
Environment as for setup.py (CUDA_HOME, TORCH_CUDA_ARCH_LIST, MAX_JOBS).
"""
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def build_log():
    for source in (ROOT / "csrc" / "ops" / "cuda").glob("*.cu"):
        source.touch()  # ninja recompiles only what changed
    env = dict(os.environ, PYCNN_PTXAS_VERBOSE="1", PYCNN_CUDA="1")
    done = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        sys.stdout.write(done.stdout[-4000:])
        sys.exit(f"ptxas_report: the build failed (exit {done.returncode})")
    return done.stdout


def demangle(names):
    try:
        return subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True,
                              check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return names


def short_name(name):
    name = re.sub(r"pycnn::gpu::(\(anonymous namespace\)::)?", "", name)
    name = name.replace("c10::Half", "half").replace("c10::BFloat16", "bfloat16")
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\((?:[^()]|\([^()]*\))*\)$", "", name)  # drop the parameter list


def parse(log):
    """(kernel, arch, registers, stack, spill stores, spill loads, shared bytes) per kernel."""
    rows, current, frame = [], None, (0, 0, 0)
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(\S+)' for '(\w+)'", line)
        if m:
            current, frame = m.groups(), (0, 0, 0)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and current:
            frame = tuple(int(v) for v in m.groups())
            continue
        m = re.search(r"Used (\d+) registers(.*)", line)
        if m and current:
            smem = re.search(r"(\d+) bytes smem", m.group(2))
            rows.append((current[0], current[1], int(m.group(1)), *frame,
                         int(smem.group(1)) if smem else 0))
            current = None
    names = demangle([r[0] for r in rows])
    return [(short_name(n),) + r[1:] for n, r in zip(names, rows)]


def main(argv):
    log = pathlib.Path(argv[1]).read_text() if len(argv) > 1 else build_log()
    rows = sorted(set(parse(log)))
    if not rows:
        sys.exit("ptxas_report: no ptxas report found (was the build verbose, and did it compile?)")
    print(f"{'regs':>4} {'stack':>5} {'spill st/ld':>11} {'smem':>6}  arch   kernel")
    for name, arch, regs, stack, spill_st, spill_ld, smem in rows:
        print(f"{regs:4d} {stack:5d} {f'{spill_st}/{spill_ld}':>11} {smem:6d}  {arch:<6} {name}")
    bad = [r for r in rows if r[3] or r[4] or r[5]]
    print(f"\n{len(rows)} kernels, {len(bad)} with a stack frame or spills")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
