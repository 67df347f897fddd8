"""Temperature scaling (Guo, Pleiss, Sun and Weinberger, "On calibration of
modern neural networks", ICML 2017): one scalar T divides the logits,
softmax(z / T), fitted to minimise the negative log-likelihood on held-out
data.  T changes no prediction (argmax is unchanged), only the confidence.

The NLL is convex in the inverse temperature b = 1/T (b * z_y minus the
log-sum-exp of b * z, linear minus convex), so a golden-section search over
log b finds the global minimum without gradients or a learning rate.
"""
import dataclasses
import math

import torch

__all__ = ["nll", "expected_calibration_error", "fit_temperature", "CalibrationReport", "calibrate"]

ECE_BINS = 15
_LOG_INVERSE_T_RANGE = (math.log(1e-3), math.log(1e3))


def nll(logits, labels, temperature=1.0):
    """Mean negative log-likelihood of softmax(logits / temperature)."""
    logits = logits.double() / temperature
    return torch.nn.functional.cross_entropy(logits, labels).item()


def expected_calibration_error(logits, labels, temperature=1.0, bins=ECE_BINS):
    """ECE: the confidence range [0, 1] cut into `bins` equal bins; the mean over
    samples of |accuracy - mean confidence| of each sample's bin."""
    probabilities = torch.softmax(logits.double() / temperature, dim=1)
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).double()
    # Bin b holds confidences in (b/bins, (b+1)/bins]; the top bin includes 1.
    which = (confidence * bins).ceil().long().clamp(1, bins) - 1
    # Per bin, sum(correct - confidence) = n_b * (accuracy_b - confidence_b).
    gap = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct - confidence)
    return (gap.abs().sum() / max(len(labels), 1)).item()


def fit_temperature(logits, labels, iterations=100):
    """The temperature T > 0 minimising nll(logits, labels, T)."""
    if len(labels) == 0:
        raise ValueError("fit_temperature: no samples to fit on")
    logits = logits.detach().double()
    loss = lambda log_b: nll(logits, labels, math.exp(-log_b))
    low, high = _LOG_INVERSE_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return math.exp(-(low + high) / 2)


@dataclasses.dataclass
class CalibrationReport:
    temperature: float
    # split name -> (nll before, nll after, ece before, ece after)
    figures: dict

    def format(self):
        lines = [f"temperature scaling: T = {self.temperature:.4f} (fitted on the validation split)",
                 f"  {'split':<6}{'NLL before':>12}{'NLL after':>12}{'ECE before':>12}{'ECE after':>12}"]
        for split, (nll0, nll1, ece0, ece1) in self.figures.items():
            lines.append(f"  {split:<6}{nll0:>12.4f}{nll1:>12.4f}{ece0 * 100:>11.2f}%{ece1 * 100:>11.2f}%")
        return "\n".join(lines)


def calibrate(val_logits, val_labels, others=()):
    """Fits T on the validation logits; reports NLL and ECE before and after on
    the validation split and on each (name, logits, labels) of `others`."""
    temperature = fit_temperature(val_logits, val_labels)
    figures = {}
    for name, logits, labels in [("val", val_logits, val_labels), *others]:
        figures[name] = (nll(logits, labels), nll(logits, labels, temperature),
                         expected_calibration_error(logits, labels),
                         expected_calibration_error(logits, labels, temperature))
    return CalibrationReport(temperature, figures)
