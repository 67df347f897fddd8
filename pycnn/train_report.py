"""What `python -m pycnn train` shows: the epoch table, the confusion matrix
and the PNG of the loss and accuracy curves."""
import torch

__all__ = ["EPOCH_HEADER", "format_epoch", "confusion_matrix", "format_confusion", "plot_curves"]

EPOCH_HEADER = (f"{'epoch':>5}  {'lr':>8}  {'train loss':>10}  {'train acc':>9}  {'val loss':>8}  "
                f"{'val acc':>7}  {'img/s':>7}  {'time':>6}")

MAX_PRINTED_CLASSES = 20


def format_epoch(row, epochs):
    return (f"{row['epoch']:>2}/{epochs:<2}  {row['lr']:>8.2e}  {row['train_loss']:>10.4f}  "
            f"{row['train_acc'] * 100:>8.2f}%  {row['val_loss']:>8.4f}  {row['val_acc'] * 100:>6.2f}%  "
            f"{row['images_per_second']:>7.0f}  {row['seconds']:>5.1f}s")


def confusion_matrix(predicted, labels, num_classes):
    """counts[true class, predicted class]."""
    flat = labels.long() * num_classes + predicted.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def format_confusion(matrix, class_names=None):
    """The matrix as text, rows the true class and columns the prediction; for
    many classes, the most frequent confusions instead."""
    n = matrix.shape[0]
    names = [str(c) for c in (class_names or range(n))]
    if n > MAX_PRINTED_CLASSES:
        off = matrix.clone()
        off.fill_diagonal_(0)
        values, flat = off.flatten().topk(min(10, off.numel()))
        lines = ["most frequent confusions (true -> predicted: count)"]
        lines += [f"  {names[i // n]} -> {names[i % n]}: {v}" for v, i in zip(values.tolist(), flat.tolist())
                  if v > 0]
        return "\n".join(lines)
    width = max(max(len(s) for s in names), len(str(int(matrix.max()))) if matrix.numel() else 1) + 1
    lines = ["confusion matrix (rows: true class, columns: predicted class)",
             " " * (width + 1) + "".join(s.rjust(width) for s in names)]
    for name, row in zip(names, matrix.tolist()):
        lines.append(name.rjust(width) + " " + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)


def plot_curves(history, path, title):
    """Loss and accuracy per epoch, training and validation, as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axes.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss_axes.plot(epochs, [r["val_loss"] for r in history], "s-", label="validation")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    loss_axes.set_yscale("log")
    accuracy_axes.plot(epochs, [100 * r["train_acc"] for r in history], "o-", label="train")
    accuracy_axes.plot(epochs, [100 * r["val_acc"] for r in history], "s-", label="validation")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
