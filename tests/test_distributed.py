"""`torchrun --nproc_per_node 2 -m pycnn train`: data-parallel training on
the CPU with gloo.  Both processes must end with identical weights, only
rank 0 writes, and the accuracy must match a one-process run of the same
command within ACCURACY_MARGIN.

Why not exactly: the global batch (--batch-size 32) is split 16 + 16 and
DistributedDataParallel averages the two gradients.  The batches hold the
same 32 images as the one-process run's (DistributedSampler deals the same
seeded permutation out alternately), but each process draws its own random
shifts (the augmentation), the sums run in another order, and the last,
partial batch of an epoch is padded to an even split.  The runs are two
samples of the same training, and a test split of 360 moves in steps of
0.28 %.
"""
import os
import subprocess
import sys

import pytest
import torch

import pycnn
from pycnn import checkpoint, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(pycnn.__file__)))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
ACCURACY_MARGIN = 0.01  # one percentage point, 3 of 360 test images (measured: equal)
EPOCHS = 4


def torchrun(*arguments):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *arguments]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_on_the_cpu_agree(tmp_path):
    arguments = ["lenet5", "--epochs", str(EPOCHS), "--no-progress", "--output-dir", str(tmp_path / "run")]
    done = torchrun(WORKER, str(tmp_path), *arguments)
    assert "2 processes (gloo)" in done.stdout
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]

    # identical weights on both processes
    first, second = (r["state_dict"] for r in ranks)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)

    # only rank 0 writes: a checkpoint per epoch, the final one and the plot
    assert ranks[1]["writes"] == []
    path = str(tmp_path / "run" / "checkpoint.pt")
    plot = f"plot {tmp_path / 'run' / 'curves.png'}"
    assert sorted(ranks[0]["writes"]) == sorted([f"checkpoint {path}"] * (EPOCHS + 1) + [plot])
    state = checkpoint.load(path)
    assert state["complete"] and all(torch.equal(state["state_dict"][k], first[k]) for k in first)

    # the same command in one process
    single = train.fit(train.TrainConfig(epochs=EPOCHS, threads=1, quiet=True, progress=False,
                                         output_dir=str(tmp_path / "single")))
    two = ranks[0]["test_accuracy"]
    print(f"test accuracy: one process {single.test_accuracy:.4f}, two processes {two:.4f}")
    assert abs(two - single.test_accuracy) <= ACCURACY_MARGIN


@pytest.mark.slow
def test_two_processes_resume_to_the_same_weights(tmp_path):
    """`torchrun ... -m pycnn train --resume` after a stop: every process
    restores its own random state and the run ends on the uninterrupted weights."""
    command = ["-m", "pycnn", "train", "--epochs", "2", "--no-progress"]
    torchrun(*command, "--output-dir", str(tmp_path / "whole"))
    torchrun(*command, "--output-dir", str(tmp_path / "resumed"), "--stop-after", "1")
    assert checkpoint.load(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    done = torchrun(*command, "--output-dir", str(tmp_path / "resumed"), "--resume")
    assert "resumed from" in done.stdout
    whole = checkpoint.load(tmp_path / "whole" / "checkpoint.pt")
    resumed = checkpoint.load(tmp_path / "resumed" / "checkpoint.pt")
    assert len(resumed["rng"]) == 2 and resumed["complete"]
    assert all(torch.equal(whole["state_dict"][k], resumed["state_dict"][k]) for k in whole["state_dict"])
