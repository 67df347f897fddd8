"""Datasets for `python -m pycnn train`, held in memory as tensors.

    digits  scikit-learn's bundled handwritten digits (1,797 images of 8x8, no
            download): each digit is scaled 3x to 24x24 and centred on a 32x32
            canvas, as MNIST's 20x20 digits sit in LeNet-5's 32x32 input.  A fixed
            stratified split (seed 0, whatever the training seed): 70 % train,
            10 % validation, 20 % test.
    mnist   the MNIST IDX files as distributed (train-images-idx3-ubyte,
            train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
            t10k-labels-idx1-ubyte, each optionally .gz), read from --data-dir
            or from its MNIST/raw/ (torchvision's layout); never downloaded.  The
            28x28 images are padded to 32x32; the last 5,000 training images of
            a fixed permutation are the validation split, t10k the test split.
    fake    synthetic images of any size, channel and class count: each class
            is a fixed random smooth pattern, each image its class's pattern
            plus noise, so that a model can learn it (accuracy rises) while
            nothing is fetched.

Images are float32 and standardised with the training split's mean and
standard deviation per channel; the Split keeps them so that `predict` can
prepare new images the same way.
"""
import dataclasses
import gzip
import os
import struct
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

__all__ = ["Split", "digits", "mnist", "fake", "load", "read_idx", "write_idx", "DATASETS",
           "MNIST_FILES"]

DATASETS = ("digits", "mnist", "fake")
SPLIT_SEED = 0  # the split never depends on the training seed: test sets stay comparable


@dataclasses.dataclass
class Split:
    """A dataset's train/validation/test tensors (images N x C x H x W, labels N)."""
    name: str
    train: Tuple[torch.Tensor, torch.Tensor]
    val: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]
    class_names: Sequence[str]

    @property
    def image_shape(self):
        return tuple(self.train[0].shape[1:])

    def part(self, name):
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def with_channels(self, channels):
        """The same split with grayscale images repeated to `channels` channels
        (for the zoo's RGB models on digits or MNIST)."""
        have = self.image_shape[0]
        if have == channels:
            return self
        if have != 1:
            raise ValueError(f"dataset {self.name!r} has {have} channels; a model taking {channels} "
                             f"channels cannot use it")
        expand = lambda pair: (pair[0].expand(-1, channels, -1, -1).contiguous(), pair[1])
        return dataclasses.replace(self, train=expand(self.train), val=expand(self.val),
                                   test=expand(self.test), mean=list(self.mean) * channels,
                                   std=list(self.std) * channels)


def _standardised(name, train, val, test, num_classes, class_names=None):
    """Builds a Split, standardising every part with the train part's statistics."""
    images = train[0]
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3)).clamp_min(1e-6)
    norm = lambda pair: (((pair[0] - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)).contiguous(),
                         pair[1])
    names = list(class_names) if class_names else [str(k) for k in range(num_classes)]
    return Split(name, norm(train), norm(val), norm(test), num_classes, mean.tolist(), std.tolist(),
                 names)


def standardise(images, mean, std):
    """Applies a Split's standardisation to images scaled to [0, 1] (N x C x H x W)."""
    mean = torch.as_tensor(mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype).view(1, -1, 1, 1)
    return (images - mean) / std


def digits_canvas(images_8x8):
    """(N, 8, 8) digits with values in [0, 16] -> (N, 1, 32, 32) float32 in [0, 1]:
    each pixel becomes a 3x3 block, the 24x24 digit centred with a 4-pixel margin."""
    images = np.asarray(images_8x8, dtype=np.float32) / 16.0
    scaled = images.repeat(3, axis=1).repeat(3, axis=2)
    canvas = np.zeros((images.shape[0], 1, 32, 32), dtype=np.float32)
    canvas[:, 0, 4:28, 4:28] = scaled
    return torch.from_numpy(canvas)


def digits(val_fraction=0.1, test_fraction=0.2):
    """scikit-learn's bundled digits on a 32x32 canvas, split with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = digits_canvas(bunch.images)
    labels = torch.from_numpy(bunch.target.astype(np.int64))
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, random_state=SPLIT_SEED,
                                  stratify=bunch.target)
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  random_state=SPLIT_SEED, stratify=bunch.target[rest])
    take = lambda idx: (images[torch.from_numpy(idx)], labels[torch.from_numpy(idx)])
    return _standardised("digits", take(train), take(val), take(test), 10)


# ---------------------------------------------------------------- MNIST (IDX)

MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}

# The IDX format: two zero bytes, a type code, the number of dimensions, then
# each dimension as a big-endian int32, then the data, big-endian.
_IDX_TYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path):
    """Reads an IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise ValueError(f"{path}: not an IDX file (magic bytes {data[:4].hex()})")
    dtype, ndim = _IDX_TYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header cut short ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(f"{path}: IDX shape {shape} needs {expected} bytes of data, "
                         f"the file has {len(data) - header}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path, array):
    """Writes a numpy array as an IDX file (the inverse of read_idx; for tests and tools)."""
    array = np.asarray(array)
    code = next((c for c, t in _IDX_TYPES.items() if t.kind == array.dtype.kind
                 and t.itemsize == array.dtype.itemsize), None)
    if code is None:
        raise ValueError(f"write_idx: no IDX type for dtype {array.dtype}")
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(_IDX_TYPES[code]).tobytes())


def _find_mnist_file(data_dir, stem):
    for folder in (data_dir, os.path.join(data_dir, "MNIST", "raw"), os.path.join(data_dir, "raw")):
        for name in (stem, stem + ".gz"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(
        f"MNIST: {stem}[.gz] not found in {data_dir!r} (nor in its MNIST/raw/). pycnn never downloads "
        f"data at run time: place the four IDX files {', '.join(MNIST_FILES.values())} there")


def mnist(data_dir, val_size=5000):
    """MNIST from its IDX files, 28x28 padded to 32x32."""
    if not data_dir:
        raise ValueError("--dataset mnist needs --data-dir DIR holding the MNIST IDX files")
    arrays = {key: read_idx(_find_mnist_file(data_dir, stem)) for key, stem in MNIST_FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"MNIST {part}: images {images.shape} and labels {labels.shape} do not match")

    def tensors(part):
        images = torch.from_numpy(arrays[f"{part}_images"].astype(np.float32) / 255.0).unsqueeze(1)
        images = torch.nn.functional.pad(images, (2, 2, 2, 2))
        return images, torch.from_numpy(arrays[f"{part}_labels"].astype(np.int64))

    train_images, train_labels = tensors("train")
    if not 0 < val_size < len(train_labels):
        val_size = max(1, len(train_labels) // 12)
    order = torch.randperm(len(train_labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    train_idx, val_idx = order[:-val_size], order[-val_size:]
    num_classes = int(max(train_labels.max(), arrays["test_labels"].max())) + 1
    return _standardised("mnist", (train_images[train_idx], train_labels[train_idx]),
                         (train_images[val_idx], train_labels[val_idx]), tensors("test"),
                         max(num_classes, 10))


# ---------------------------------------------------------------- synthetic

def fake(num_classes=10, image_shape=(3, 32, 32), train_size=512, val_size=128, test_size=128,
         noise=1.0, seed=SPLIT_SEED):
    """Learnable synthetic images: class k is a smooth random pattern plus
    Gaussian noise (a signal-to-noise ratio of about 1 per pixel)."""
    if num_classes < 2:
        raise ValueError(f"fake dataset: num_classes={num_classes} must be at least 2")
    channels, height, width = image_shape
    if min(image_shape) < 1:
        raise ValueError(f"fake dataset: image shape {tuple(image_shape)} must be positive")
    generator = torch.Generator().manual_seed(seed)
    # Smooth patterns: a coarse random grid, upsampled bilinearly.
    coarse = torch.randn(num_classes, channels, max(2, height // 4), max(2, width // 4),
                         generator=generator)
    patterns = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear",
                                               align_corners=False)
    patterns = patterns / patterns.flatten(1).std(dim=1).view(-1, 1, 1, 1)

    def draw(count):
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=generator)]
        images = patterns[labels] + noise * torch.randn(count, channels, height, width, generator=generator)
        return images, labels

    return _standardised("fake", draw(train_size), draw(val_size), draw(test_size), num_classes)


def load(name, data_dir=None, num_classes=10, image_shape=(1, 32, 32), fake_size=512):
    """The dataset `name` (one of DATASETS)."""
    if name == "digits":
        return digits()
    if name == "mnist":
        return mnist(data_dir)
    if name == "fake":
        return fake(num_classes, image_shape, train_size=fake_size, val_size=max(fake_size // 4, num_classes),
                    test_size=max(fake_size // 4, num_classes))
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")
