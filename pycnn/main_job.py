"""The main job (`make run`): from nothing to a trained LeNet-5 and a verified
library, in one command.

1. trains LeNet-5 on scikit-learn's bundled digits with pycnn's convolution
   and pooling kernels (`python -m pycnn train`'s defaults), with test
   accuracy, confusion matrix, calibration and runs/lenet5-digits/;
2. prints verify's summary: every op forward and backward in float32 and
   float64, then one model of each family of the zoo against torch's
   reference (torchvision's model, or the same model on torch's layers) at
   its small check size.  `python -m pycnn verify all` (make verify) checks
   every model in both dtypes; it takes longer.
"""
import sys
import time

import torch

from . import train, verify

# One model per family: what the short summary verifies.
FAMILIES = ("lenet5", "lenet5_classic", "alexnet", "vgg11_bn", "resnet18", "squeezenet1_1")


def add_arguments(parser):
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--models", choices=["families", "all", "none"], default="families",
                        help="models verified after training: one per family (default), every model "
                             "of the zoo, or none")
    parser.add_argument("--output-dir", default="runs/lenet5-digits",
                        help="where the trained LeNet-5 goes (default %(default)s)")


def _verify_models(names, device):
    reports = []
    for name in names:
        report = verify.verify_model(name, dtype=torch.float32, device=device)
        reports.append(report)
        print(f"  {name}: {'ok' if report.passed else 'FAIL'} ({report.seconds:.1f} s)", file=sys.stderr,
              flush=True)
    return reports


def run(args):
    started = time.perf_counter()
    print("== 1/2  training LeNet-5 on the bundled digits with pycnn's kernels ==\n", flush=True)
    config = train.TrainConfig(device=args.device, output_dir=args.output_dir)
    result = train.fit(config)
    trained = time.perf_counter() - started

    print("\n== 2/2  verifying pycnn against torch ==\n", flush=True)
    rows = verify.verify_ops(args.device)
    status = verify.report(rows, f"pycnn ops vs torch.nn.functional on {args.device}, forward and backward")
    if args.models != "none":
        from . import models
        names = models.names() if args.models == "all" else FAMILIES
        print(f"\npycnn models vs torch on {args.device} (float32, batch 2, train mode, dropout off): "
              f"one per family; `python -m pycnn verify all` checks every model")
        reports = _verify_models(names, args.device)
        print(verify.format_model_reports(reports))
        failed = [r for r in reports if not r.passed]
        for report in failed:
            print("\n" + verify.format_layers(report, only_failures=True))
        print(f"\n{len(reports) - len(failed)}/{len(reports)} models within tolerance")
        status |= 1 if failed else 0

    total = time.perf_counter() - started
    calibration = result.calibration
    print(f"\nsummary: LeNet-5 on digits, test accuracy {result.test_accuracy * 100:.2f}% "
          f"(trained in {trained:.0f} s, temperature {calibration.temperature:.3f}); "
          f"verification {'passed' if status == 0 else 'FAILED'}; {total:.0f} s in all")
    return status
