"""`python -m pycnn predict CHECKPOINT [IMAGE ...]`: classifies images with a
model trained by `python -m pycnn train`, its probabilities calibrated by
the temperature fitted after training (softmax(logits / T)).

    python -m pycnn predict runs/lenet5-digits/checkpoint.pt digit.png
    python -m pycnn predict runs/lenet5-digits/checkpoint.pt --split test

IMAGE: an image file (PNG, JPEG, ...; converted to the model's channels and
resized to its input, values scaled to [0, 1]: draw the digit light on a dark
background, as in the training data), or a .npy / .pt array of images in
[0, 1] shaped N x H x W or N x C x H x W.  For a model trained on the
digits, 8x8 arrays are placed on the 32x32 canvas as in training (scaled 3x,
centred), so scikit-learn's load_digits().images / 16 classify as they are.
--split classifies the validation
or test split of the dataset the model was trained on and reports accuracy,
NLL and ECE with and without the temperature.
"""
import os
import sys

import numpy as np
import torch

from . import calibration, checkpoint, data

__all__ = ["Predictor", "add_arguments", "run"]


class Predictor:
    """A trained checkpoint ready to classify: predictor.probabilities(images)."""

    def __init__(self, path, device="cpu"):
        self.path = path
        self.state = checkpoint.load(path)
        self.device = torch.device(device)
        self.model = checkpoint.model_from_checkpoint(self.state, self.device)
        self.temperature = self.state.get("temperature") or 1.0
        self.calibrated = self.state.get("temperature") is not None
        self.class_names = self.state["class_names"]
        self.image_shape = tuple(self.state["image_shape"])

    def standardise(self, images):
        """Images in [0, 1] (N x C x H x W) -> the model's input, as in training."""
        return data.standardise(images.float(), self.state["mean"], self.state["std"])

    @torch.no_grad()
    def logits(self, inputs):
        """Logits for already standardised inputs."""
        from .train import logits_of
        return logits_of(self.model, inputs, self.device)

    def probabilities(self, inputs, calibrated=True):
        """softmax(logits / T) of standardised inputs; T = 1 when not calibrated."""
        temperature = self.temperature if calibrated else 1.0
        return torch.softmax(self.logits(inputs).double() / temperature, dim=1)


def read_images(paths, image_shape, dataset=None):
    """Image files or arrays -> (N x C x H x W float32 in [0, 1], one name per image).
    dataset: the checkpoint's; 'digits' puts 8x8 arrays on the training canvas."""
    channels, height, width = image_shape
    images, names = [], []
    for path in paths:
        if path.endswith((".npy", ".pt")):
            array = np.load(path) if path.endswith(".npy") else torch.load(path, weights_only=True)
            array = torch.as_tensor(array).float()
            if array.dim() == 2:
                array = array[None]
            if array.dim() == 3:
                array = array[:, None]
            if dataset == "digits" and array.dim() == 4 and tuple(array.shape[1:]) == (1, 8, 8):
                array = data.digits_canvas(array[:, 0].numpy() * 16.0)
            if array.dim() != 4:
                raise ValueError(f"{path}: an array of images must be N x H x W or N x C x H x W, "
                                 f"got shape {list(array.shape)}")
            if array.shape[1] != channels:
                if array.shape[1] != 1:
                    raise ValueError(f"{path}: {array.shape[1]} channels; the model takes {channels}")
                array = array.expand(-1, channels, -1, -1)
            if tuple(array.shape[2:]) != (height, width):
                array = torch.nn.functional.interpolate(array, size=(height, width), mode="bilinear",
                                                        align_corners=False)
            images.append(array)
            names += [f"{path}[{i}]" for i in range(len(array))] if len(array) > 1 else [path]
            continue
        from PIL import Image
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
            pixels = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0)
        images.append(pixels.view(height, width, -1).permute(2, 0, 1)[None])
        names.append(path)
    return torch.cat(images).contiguous(), names


def add_arguments(parser):
    parser.add_argument("checkpoint", help="a checkpoint written by `python -m pycnn train`")
    parser.add_argument("images", nargs="*", help="image files, or .npy/.pt arrays of images in [0, 1]")
    parser.add_argument("--split", choices=["val", "test"],
                        help="classify this split of the training dataset and report its figures")
    parser.add_argument("--data-dir", help="where the MNIST IDX files are (for --split on mnist; "
                                           "default: the training run's)")
    parser.add_argument("--top", type=int, default=3, help="classes listed per image (default 3)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])


def _split_report(predictor, split_name, data_dir):
    config = predictor.state["config"]
    from .train import TrainConfig, load_split
    fields = {k: v for k, v in config.items() if k in TrainConfig.__dataclass_fields__}
    if data_dir:
        fields["data_dir"] = data_dir
    split = load_split(TrainConfig(**fields), predictor.image_shape)
    images, labels = split.part(split_name)
    logits = predictor.logits(images)
    accuracy = (logits.argmax(1) == labels).double().mean().item()
    t = predictor.temperature
    print(f"{predictor.state['model']} on {split.name} {split_name}: accuracy {accuracy * 100:.2f}% "
          f"({len(labels)} images)")
    print(f"  temperature T = {t:.4f}" + ("" if predictor.calibrated else " (checkpoint not calibrated)"))
    print(f"  NLL {calibration.nll(logits, labels):.4f} -> {calibration.nll(logits, labels, t):.4f}, "
          f"ECE {calibration.expected_calibration_error(logits, labels) * 100:.2f}% -> "
          f"{calibration.expected_calibration_error(logits, labels, t) * 100:.2f}% (T = 1 -> T)")
    return 0


def run(args):
    try:
        predictor = Predictor(args.checkpoint, args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"predict: {error}", file=sys.stderr)
        return 2
    if not args.images and not args.split:
        print("predict: give image files or --split val|test", file=sys.stderr)
        return 2
    if args.split:
        _split_report(predictor, args.split, args.data_dir)
    if args.images:
        missing = [p for p in args.images if not os.path.exists(p)]
        if missing:
            print(f"predict: no such file: {', '.join(missing)}", file=sys.stderr)
            return 2
        try:
            images, names = read_images(args.images, predictor.image_shape, predictor.state["dataset"])
        except ValueError as error:
            print(f"predict: {error}", file=sys.stderr)
            return 2
        probabilities = predictor.probabilities(predictor.standardise(images))
        top = max(1, min(args.top, probabilities.shape[1]))
        values, classes = probabilities.topk(top, dim=1)
        note = f"T = {predictor.temperature:.3f}" if predictor.calibrated else "uncalibrated, T = 1"
        print(f"class probabilities, softmax(logits / T) with {note}")
        for name, p, k in zip(names, values.tolist(), classes.tolist()):
            listing = "  ".join(f"{predictor.class_names[c]} {q * 100:5.1f}%" for c, q in zip(k, p))
            print(f"{name}: {predictor.class_names[k[0]]}   ({listing})")
    return 0
