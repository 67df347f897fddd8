"""`python -m pycnn COMMAND ...`: one subcommand per job, each in its own module.

Every command module defines `add_arguments(parser)` and `run(args) -> int`
(the exit status); it is imported only when its command runs, so that
`python -m pycnn --help` stays fast.
"""
import argparse
import importlib
import sys

# command -> (module, one-line help)
COMMANDS = {
    "main": ("pycnn.main_job", "the main job: train LeNet-5 with pycnn kernels, then verify the library"),
    "verify": ("pycnn.verify", "check ops and models against torch's reference ops"),
    "bench": ("pycnn.bench", "benchmark pycnn's kernels against torch's, side by side"),
    "summary": ("pycnn.summary", "layer-by-layer table of a model: shapes, parameters, multiply-adds"),
    "train": ("pycnn.train", "train a model of the zoo (default: LeNet-5 on the bundled digits)"),
    "predict": ("pycnn.predict", "classify images with a trained checkpoint"),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m pycnn", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(_module=module_name)
    return parser, sub


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, sub = build_parser()
    # The first word is the command: let its module declare its options
    # before parsing, so that `python -m pycnn bench --help` lists them.
    name = next((word for word in argv if not word.startswith("-")), None)
    if name in COMMANDS:
        importlib.import_module(COMMANDS[name][0]).add_arguments(sub.choices[name])
    args = parser.parse_args(argv)
    return importlib.import_module(args._module).run(args) or 0
