"""The main job (`make run`): shows, on this machine, that pycnn's kernels
agree with torch's, op by op, forward and backward, in every dtype."""
from . import verify


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def run(args):
    rows = verify.verify_ops(args.device)
    return verify.report(rows, f"pycnn ops vs torch.nn.functional ({args.device})")
