"""Training checkpoints: written atomically, read back into a model.

A checkpoint is one torch.save'd dict of tensors and plain values (it loads
with weights_only=True).  save() writes a temporary file in the same folder,
flushes it to disk and renames it over the old one: a rename within a file
system is atomic, so a process killed at any moment leaves either the
previous checkpoint or the new one, whole, never a torn file.
"""
import os
import tempfile

import torch

__all__ = ["FORMAT", "save", "load", "build_model", "model_from_checkpoint"]

FORMAT = "pycnn-train-checkpoint-v1"


def save(state, path):
    """Writes `state` to `path` atomically (temporary file, fsync, rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint need not be
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    # The rename itself reaches the disk with the folder's entry.
    try:
        folder_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(folder_fd)
    except OSError:
        pass
    finally:
        os.close(folder_fd)


def load(path, map_location="cpu"):
    """Reads a checkpoint written by save(); refuses other files with a clear error."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not a pycnn training checkpoint (format {FORMAT})")
    return state


def build_model(name, num_classes, torch_layers=False):
    """The zoo's model `name` with `num_classes` outputs, on pycnn's layers, or
    with torch's own layers in their place when torch_layers (the same
    modules, so the same initial weights for the same seed)."""
    from . import models
    model = models.get(name, num_classes=num_classes)
    if torch_layers:
        from .convert import to_torch
        to_torch(model)
    return model


def model_from_checkpoint(state, device="cpu"):
    """The trained model of a checkpoint, in eval mode."""
    model = build_model(state["model"], state["num_classes"], state["torch_layers"])
    model.load_state_dict(state["state_dict"])
    return model.to(device).eval()
