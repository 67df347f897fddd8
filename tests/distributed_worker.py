"""One process of tests/test_distributed.py, launched by torchrun: parses a
`python -m pycnn train` command line as the command does, trains, and saves
this rank's final weights and what it wrote, for the test to compare."""
import os
import sys

import torch

from pycnn import checkpoint, cli, train, train_report


def main():
    out, argv = sys.argv[1], sys.argv[2:]
    rank = int(os.environ["RANK"])
    writes = []
    save, plot = checkpoint.save, train_report.plot_curves
    checkpoint.save = lambda state, path: (writes.append(f"checkpoint {path}"), save(state, path))
    train_report.plot_curves = lambda *a: (writes.append(f"plot {a[1]}"), plot(*a))

    parser, sub = cli.build_parser()
    train.add_arguments(sub.choices["train"])
    cfg = train.config_from_args(parser.parse_args(["train", *argv]))
    result = train.fit(cfg)
    torch.save({"state_dict": result.model.state_dict(), "writes": writes, "world": int(os.environ["WORLD_SIZE"]),
                "test_accuracy": result.test_accuracy, "threads": torch.get_num_threads()},
               os.path.join(out, f"rank{rank}.pt"))


if __name__ == "__main__":
    main()
