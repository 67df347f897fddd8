"""`python -m pycnn train MODEL`: trains a model of the zoo whose every
convolution and pooling runs on pycnn's kernels.

    python -m pycnn train                       # LeNet-5 on scikit-learn's bundled digits
    python -m pycnn train lenet5 --dataset mnist --data-dir ~/data/mnist
    python -m pycnn train resnet18 --dataset fake --image-size 64 --classes 10
    python -m pycnn train --torch-layers        # the same model on torch's layers, to compare
    torchrun --nproc_per_node 2 -m pycnn train  # data-parallel (gloo on the CPU, NCCL on GPUs)

Every epoch writes a checkpoint atomically (--checkpoint); --resume continues
from it to the same final weights as an uninterrupted run with the same
seed.  After training: test accuracy, confusion matrix, the loss and
accuracy curves as a PNG, and temperature scaling fitted on the validation
split (saved in the checkpoint; `python -m pycnn predict` uses it).

Reproducibility: the seed fixes the initial weights, the order of the
batches (DistributedSampler's seed + epoch) and every random draw; with one
thread (--threads 1) two runs give identical weights, and a resumed run
restores the random state of the interrupted one.
"""
import dataclasses
import math
import os
import sys
import time
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as TF
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from . import calibration as calib, checkpoint, data, train_report

__all__ = ["TrainConfig", "TrainResult", "fit", "add_arguments", "run", "config_from_args"]

OPTIMIZERS = ("adam", "adamw", "sgd")
DEFAULT_LR = {"adam": 2e-3, "adamw": 2e-3, "sgd": 0.05}
EVAL_BATCH = 500


@dataclasses.dataclass
class TrainConfig:
    model: str = "lenet5"
    dataset: str = "digits"
    data_dir: Optional[str] = None
    classes: int = 10               # --dataset fake
    image_size: Optional[int] = None  # --dataset fake; default: the model's check size
    fake_size: int = 1024           # --dataset fake: training images
    epochs: int = 15
    batch_size: int = 32            # the global batch: divided among torchrun's processes
    lr: Optional[float] = None      # default: DEFAULT_LR[optimizer]
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    shift: Optional[int] = None     # random translation (pixels); default 2 on digits and mnist, 0 on fake
    device: str = "cpu"
    threads: Optional[int] = None
    seed: int = 0
    torch_layers: bool = False
    checkpoint: Optional[str] = None  # default: OUTPUT_DIR/checkpoint.pt
    output_dir: Optional[str] = None  # default: runs/MODEL-DATASET, or the checkpoint's folder
    resume: bool = False
    progress: Optional[bool] = None   # None: a bar when stderr is a terminal
    stop_after: Optional[int] = None  # stop after this epoch, as if killed there (tests resume)
    quiet: bool = False

    @property
    def max_shift(self):
        if self.shift is not None:
            return self.shift
        return 0 if self.dataset == "fake" else 2

    @property
    def learning_rate(self):
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr


@dataclasses.dataclass
class TrainResult:
    model: torch.nn.Module
    history: list
    test_loss: Optional[float] = None
    test_accuracy: Optional[float] = None
    confusion: Optional[torch.Tensor] = None
    calibration: Optional[calib.CalibrationReport] = None
    seconds: float = 0.0
    checkpoint: Optional[str] = None
    curves: Optional[str] = None
    completed: bool = False


# ---------------------------------------------------------------- processes

@dataclasses.dataclass
class Processes:
    """This process's place among torchrun's: rank, world size, device."""
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    started_group: bool = False

    @property
    def distributed(self):
        return self.world > 1 or self.started_group

    @property
    def leader(self):
        return self.rank == 0

    def all_sum(self, values):
        """Sums a list of numbers over every process."""
        tensor = torch.tensor(values, dtype=torch.float64)
        if self.distributed:
            on = tensor.to(self.device)
            dist.all_reduce(on)
            tensor = on.cpu()
        return tensor.tolist()

    def all_gather_object(self, obj):
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def barrier(self):
        if self.distributed:
            dist.barrier()

    def close(self):
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()


def start_processes(device):
    """Joins torchrun's process group when launched by it (RANK and WORLD_SIZE
    set): gloo on the CPU, NCCL on GPUs, one GPU per process by LOCAL_RANK."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("train: --device cuda but no CUDA GPU is visible")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Processes(device=torch.device("cuda" if device == "cuda" else "cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        where = torch.device("cuda", local_rank)
    else:
        where = torch.device("cpu")
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world)
        started = True
    return Processes(rank, world, where, started)


# ---------------------------------------------------------------- state

def _rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# Settings that must match for --resume to continue the same run.
_RESUME_KEYS = ("model", "dataset", "classes", "image_size", "fake_size", "batch_size", "optimizer",
                "seed", "torch_layers", "schedule", "shift")


def _check_resumable(state, cfg, path):
    saved = state["config"]
    different = [f"{k}: checkpoint {saved.get(k)!r}, now {getattr(cfg, k)!r}" for k in _RESUME_KEYS
                 if saved.get(k) != getattr(cfg, k)]
    if different:
        raise ValueError(f"--resume: {path} was written by a different run ({'; '.join(different)}); "
                         f"use the same options or another --checkpoint")


def learning_rate_at(cfg, epoch):
    """The learning rate for 0-based `epoch`: cosine from lr to 0 over the run, or constant."""
    if cfg.schedule == "cosine":
        return cfg.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    return cfg.learning_rate


def make_optimizer(cfg, parameters):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=cfg.learning_rate, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    raise ValueError(f"train: optimizer={cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")


# ---------------------------------------------------------------- evaluation

@torch.no_grad()
def logits_of(model, images, device, batch_size=EVAL_BATCH):
    """The model's logits for `images` (on the CPU, float32), in eval mode."""
    was_training = model.training
    model.eval()
    outputs = [model(images[i:i + batch_size].to(device)).float().cpu()
               for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def evaluate_sharded(model, images, labels, processes):
    """Mean loss and accuracy over a split, each process taking every world-th image."""
    shard = slice(processes.rank, None, processes.world)
    logits = logits_of(model, images[shard], processes.device)
    labels = labels[shard]
    loss_sum = TF.cross_entropy(logits, labels, reduction="sum").item() if len(labels) else 0.0
    correct = (logits.argmax(1) == labels).sum().item() if len(labels) else 0
    loss_sum, correct, count = processes.all_sum([loss_sum, correct, len(labels)])
    return loss_sum / max(count, 1), correct / max(count, 1)


# ---------------------------------------------------------------- the run

def _log(cfg, processes, message=""):
    if processes.leader and not cfg.quiet:
        from tqdm import tqdm
        tqdm.write(message, file=sys.stdout)


def _output_paths(cfg):
    output_dir = cfg.output_dir
    if output_dir is None:
        output_dir = (os.path.dirname(os.path.abspath(cfg.checkpoint)) if cfg.checkpoint
                      else os.path.join("runs", f"{cfg.model}-{cfg.dataset}"))
    path = cfg.checkpoint or os.path.join(output_dir, "checkpoint.pt")
    return output_dir, path, os.path.join(output_dir, "curves.png")


def load_split(cfg, image_shape):
    """The dataset, shaped for a model taking `image_shape` (C, H, W) inputs."""
    if cfg.dataset == "fake":
        channels, height, width = image_shape
        if cfg.image_size is not None:
            height = width = cfg.image_size
        split = data.fake(cfg.classes, (channels, height, width), train_size=cfg.fake_size,
                          val_size=max(cfg.fake_size // 4, cfg.classes),
                          test_size=max(cfg.fake_size // 4, cfg.classes))
    else:
        split = data.load(cfg.dataset, cfg.data_dir)
    return split.with_channels(image_shape[0])


def _model_input_shape(name):
    from . import models
    return models.spec(name).check_size


def fit(cfg: TrainConfig, build_model: Optional[Callable] = None, input_shape=None):
    """Trains as `cfg` says; returns a TrainResult (on every process; only the
    leader's carries the test figures).

    build_model(num_classes) -> module replaces the zoo's model (tests use a
    small stand-in); input_shape is then its (C, H, W)."""
    started = time.perf_counter()
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"train: optimizer={cfg.optimizer!r}; choose from {', '.join(OPTIMIZERS)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"train: epochs={cfg.epochs} and batch_size={cfg.batch_size} must be positive")
    if cfg.max_shift < 0:
        raise ValueError(f"train: shift={cfg.shift} must be 0 (off) or positive")
    if cfg.threads is not None and cfg.threads < 1:
        raise ValueError(f"train: threads={cfg.threads} must be positive")
    if cfg.device == "cuda" and not cfg.torch_layers:
        from ._extension import cuda_compiled
        if not cuda_compiled():
            raise ValueError("train: --device cuda, but this build of pycnn has no CUDA kernels; rebuild it "
                             "with CUDA, or add --torch-layers to train on torch's layers")
    saved_threads = torch.get_num_threads()
    threads = cfg.threads or default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    processes = start_processes(cfg.device)
    try:
        return _fit(cfg, processes, build_model, input_shape, started)
    finally:
        processes.close()
        torch.set_num_threads(saved_threads)


def default_threads(cfg):
    """Threads when --threads is not given: one for LeNet-5 on the CPU, whose
    layers are too small to share (a batch of 32 is about 13 million
    multiply-adds, and threads spend more waiting for each other than they
    save: two threads ran 3 to 10 times slower than one on the shared 2-core
    machine), otherwise None (torch's default)."""
    return 1 if cfg.model.startswith("lenet5") and cfg.device == "cpu" else None


def _fit(cfg, processes, build_model, input_shape, started):
    if cfg.batch_size % processes.world:
        raise ValueError(f"train: batch_size={cfg.batch_size} (the global batch) must be a multiple of "
                         f"the {processes.world} processes")
    output_dir, checkpoint_path, curves_path = _output_paths(cfg)
    input_shape = input_shape or _model_input_shape(cfg.model)
    split = load_split(cfg, input_shape)

    torch.manual_seed(cfg.seed)
    if build_model is None:
        model = checkpoint.build_model(cfg.model, split.num_classes, cfg.torch_layers)
    else:
        model = build_model(split.num_classes)
    model.to(processes.device)
    optimizer = make_optimizer(cfg, model.parameters())

    history, start_epoch, rng_states = [], 0, None
    if cfg.resume and os.path.exists(checkpoint_path):
        state = checkpoint.load(checkpoint_path, map_location=processes.device)
        _check_resumable(state, cfg, checkpoint_path)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        history, start_epoch, rng_states = state["history"], state["epoch"], state["rng"]
        _log(cfg, processes, f"resumed from {checkpoint_path} after epoch {start_epoch}")
    elif cfg.resume:
        _log(cfg, processes, f"--resume: no checkpoint at {checkpoint_path} yet; starting afresh")
    # Every process continues its own random stream; a different number of
    # processes than the checkpoint's cannot, and starts from the leader's.
    if rng_states is not None:
        _set_rng_state(rng_states[processes.rank] if len(rng_states) == processes.world else rng_states[0])
    elif processes.rank:
        torch.manual_seed(cfg.seed + processes.rank)  # own dropout masks per process

    trained = model
    if processes.distributed:
        from torch.nn.parallel import DistributedDataParallel
        trained = DistributedDataParallel(
            model, device_ids=[processes.device.index] if processes.device.type == "cuda" else None)

    train_images, train_labels = split.train
    # Each item carries its index, so that its augmentation depends on the
    # image and the epoch alone, not on which process draws it.
    dataset = TensorDataset(train_images, train_labels, torch.arange(len(train_labels)))
    sampler = DistributedSampler(dataset, num_replicas=processes.world, rank=processes.rank, shuffle=True,
                                 seed=cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size // processes.world, sampler=sampler)

    _announce(cfg, processes, split, model, start_epoch)
    show_bar = cfg.progress if cfg.progress is not None else sys.stderr.isatty()
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after is not None and epoch >= cfg.stop_after:
            return TrainResult(model, history, seconds=time.perf_counter() - started,
                               checkpoint=checkpoint_path)
        sampler.set_epoch(epoch)
        lr = learning_rate_at(cfg, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        row = _train_epoch(cfg, processes, trained, optimizer, loader, epoch, show_bar and processes.leader)
        row["lr"] = lr
        row["val_loss"], row["val_acc"] = evaluate_sharded(model, *split.val, processes)
        history.append(row)
        rng_states = processes.all_gather_object(_rng_state())
        if processes.leader:
            checkpoint.save(_checkpoint_state(cfg, split, model, optimizer, history, epoch + 1, rng_states),
                            checkpoint_path)
        processes.barrier()
        _log(cfg, processes, train_report.format_epoch(row, cfg.epochs))

    result = TrainResult(model, history, checkpoint=checkpoint_path, completed=True)
    if processes.leader:
        _finish(cfg, processes, split, model, optimizer, history, rng_states, result, checkpoint_path,
                output_dir, curves_path)
    processes.barrier()
    result.seconds = time.perf_counter() - started
    _log(cfg, processes, f"total time {result.seconds:.1f} s")
    return result


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _announce(cfg, processes, split, model, start_epoch):
    from ._extension import cpu_isa
    layers = "torch's layers (--torch-layers)" if cfg.torch_layers else "pycnn's kernels"
    parameters = sum(p.numel() for p in model.parameters() if p.requires_grad)
    where = (f"{processes.device.type}, {cpu_isa()}, {_count(torch.get_num_threads(), 'thread')}"
             if processes.device.type == "cpu" else str(processes.device))
    if processes.world > 1:
        where += f", {processes.world} processes ({dist.get_backend()})"
    shape = "x".join(map(str, split.image_shape))
    _log(cfg, processes,
         f"pycnn train: {cfg.model} ({parameters:,} parameters) on {split.name}: {len(split.train[1]):,} train / "
         f"{len(split.val[1]):,} validation / {len(split.test[1]):,} test images of {shape}, "
         f"{split.num_classes} classes")
    _log(cfg, processes,
         f"  convolutions and pools on {layers} ({where}); {cfg.optimizer} lr {cfg.learning_rate:g} "
         f"({cfg.schedule}), batch {cfg.batch_size}, {_count(cfg.epochs, 'epoch')}, seed {cfg.seed}")
    if start_epoch < cfg.epochs:
        _log(cfg, processes, train_report.EPOCH_HEADER)


def epoch_shifts(cfg, epoch, count):
    """(count, 2) random offsets in [-max_shift, max_shift] for every training
    image of an epoch, drawn from the seed and the epoch alone: the same for
    any number of processes, and again on resume."""
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    return torch.randint(-cfg.max_shift, cfg.max_shift + 1, (count, 2), generator=generator)


def shift_images(images, offsets):
    """Each image moved by its (dy, dx) offset, wrapping around: the digits'
    blank margin (4 pixels on the canvas) comes back in on the other side,
    so no stroke is cut."""
    n, c, h, w = images.shape
    dy, dx = offsets[:, :1], offsets[:, 1:]
    rows = (torch.arange(h).view(1, h) - dy) % h
    columns = (torch.arange(w).view(1, w) - dx) % w
    index = (rows.view(n, 1, h, 1) * w + columns.view(n, 1, 1, w)).expand(n, c, h, w).reshape(n, c, h * w)
    return images.reshape(n, c, h * w).gather(2, index).view(n, c, h, w)


def _train_epoch(cfg, processes, model, optimizer, loader, epoch, show_bar):
    from tqdm import tqdm
    model.train()
    loss_sum = correct = seen = 0.0
    started = time.perf_counter()
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not show_bar, leave=False,
               unit="batch", dynamic_ncols=True, file=sys.stderr)
    offsets = epoch_shifts(cfg, epoch, len(loader.dataset)) if cfg.max_shift else None
    for images, labels, indices in bar:
        if offsets is not None:
            images = shift_images(images, offsets[indices])
        images, labels = images.to(processes.device), labels.to(processes.device)
        logits = model(images)
        loss = TF.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        seen += len(labels)
        if show_bar:
            rate = seen * processes.world / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"loss {loss_sum / seen:.4f}  {rate:.0f} img/s", refresh=False)
    seconds = time.perf_counter() - started
    loss_sum, correct, seen = processes.all_sum([loss_sum, correct, seen])
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
            "seconds": seconds, "images_per_second": seen / max(seconds, 1e-9)}


def _checkpoint_state(cfg, split, model, optimizer, history, epoch, rng_states, final=None):
    state = {
        "format": checkpoint.FORMAT,
        "model": cfg.model, "num_classes": split.num_classes, "torch_layers": cfg.torch_layers,
        "dataset": split.name, "image_shape": list(split.image_shape), "mean": list(split.mean),
        "std": list(split.std), "class_names": list(split.class_names),
        "config": dataclasses.asdict(cfg),
        "epoch": epoch, "state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
        "rng": rng_states, "history": history,
        "complete": False, "temperature": None,
    }
    if final:
        state.update(final, complete=True)
    return state


def _finish(cfg, processes, split, model, optimizer, history, rng_states, result, checkpoint_path,
            output_dir, curves_path):
    """The leader's closing work: test figures, calibration, curves, final checkpoint."""
    device = processes.device
    test_images, test_labels = split.test
    test_logits = logits_of(model, test_images, device)
    predicted = test_logits.argmax(1)
    result.test_loss = TF.cross_entropy(test_logits, test_labels).item()
    result.test_accuracy = (predicted == test_labels).double().mean().item()
    result.confusion = train_report.confusion_matrix(predicted, test_labels, split.num_classes)
    val_logits = logits_of(model, split.val[0], device)
    result.calibration = calib.calibrate(val_logits, split.val[1], [("test", test_logits, test_labels)])

    correct = int((predicted == test_labels).sum())
    _log(cfg, processes, f"\ntest accuracy {result.test_accuracy * 100:.2f}% ({correct}/{len(test_labels)}), "
                         f"test loss {result.test_loss:.4f}")
    _log(cfg, processes, train_report.format_confusion(result.confusion, split.class_names))
    _log(cfg, processes, result.calibration.format())

    os.makedirs(output_dir, exist_ok=True)
    if history:
        title = f"{cfg.model} on {split.name} ({'torch layers' if cfg.torch_layers else 'pycnn kernels'})"
        train_report.plot_curves(history, curves_path, title)
        result.curves = curves_path
    final = {"temperature": result.calibration.temperature,
             "test": {"accuracy": result.test_accuracy, "loss": result.test_loss,
                      "confusion": result.confusion},
             "calibration": {k: list(v) for k, v in result.calibration.figures.items()}}
    checkpoint.save(_checkpoint_state(cfg, split, model, optimizer, history, cfg.epochs, rng_states, final),
                    checkpoint_path)
    written = f"saved {checkpoint_path} (weights, optimizer, temperature)"
    _log(cfg, processes, written + (f" and {curves_path}" if result.curves else ""))


# ---------------------------------------------------------------- command line

def add_arguments(parser):
    parser.add_argument("model", nargs="?", default="lenet5",
                        help="a model of the zoo (default lenet5; see `python -m pycnn summary --list`)")
    parser.add_argument("--dataset", default="digits", choices=data.DATASETS,
                        help="digits: scikit-learn's bundled 8x8 digits on a 32x32 canvas (default); "
                             "mnist: the IDX files in --data-dir; fake: synthetic images")
    parser.add_argument("--data-dir", help="folder of the MNIST IDX files (--dataset mnist)")
    parser.add_argument("--classes", type=int, default=10, help="classes of --dataset fake (default 10)")
    parser.add_argument("--image-size", type=int,
                        help="height and width of --dataset fake (default: the model's check size)")
    parser.add_argument("--fake-size", type=int, default=1024,
                        help="training images of --dataset fake (default 1024; a quarter as many "
                             "for validation and for test)")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                        help="the global batch, divided among torchrun's processes (default %(default)s)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default: adam/adamw 2e-3, sgd 0.05)")
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "constant"],
                        help="learning rate per epoch (default cosine, down to 0)")
    parser.add_argument("--shift", type=int, metavar="PIXELS",
                        help="augmentation: random translation by up to PIXELS (default 2 on digits "
                             "and mnist, 0 on fake)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int,
                        help="CPU threads per process (default: 1 for LeNet-5, whose layers are too small "
                             "to share between threads; torch's default for the other models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-layers", action="store_true",
                        help="the same model with torch's convolution and pooling layers, for comparison")
    parser.add_argument("--checkpoint", help="checkpoint file, rewritten atomically every epoch "
                                             "(default OUTPUT_DIR/checkpoint.pt)")
    parser.add_argument("--output-dir", help="folder for the checkpoint and curves.png "
                                             "(default runs/MODEL-DATASET)")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    progress = parser.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar per epoch (default: when stderr is a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("--stop-after", type=int, metavar="EPOCH",
                        help="stop after this epoch, as if killed there (to try --resume)")


def config_from_args(args):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def run(args):
    cfg = config_from_args(args)
    try:
        result = fit(cfg)
    except (ValueError, FileNotFoundError) as error:
        print(f"train: {error}", file=sys.stderr)
        return 2
    return 0 if result.completed or cfg.stop_after is not None else 1
