"""What the command-line jobs leave behind: metrics.json and a PNG of training curves."""

from __future__ import annotations

import json
import math
import os


def _plain(value):
    """JSON-safe numbers: numpy scalars become floats, NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(metrics: dict, out_dir: str) -> str:
    """Writes `metrics` as `out_dir/metrics.json` (atomically) and returns the path."""
    path = os.path.join(out_dir, "metrics.json")
    with open(path + ".partial", "w", encoding="utf-8") as f:
        json.dump(_plain(metrics), f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(path + ".partial", path)
    return path


def plot_curves(history: dict, out_dir: str, title: str) -> str:
    """Plots every logged series per epoch (training and `val_` side by side) as curves.png."""
    import matplotlib

    matplotlib.use("Agg")  # No display on servers and CI.
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(name for name in history if not name.startswith("val_"))
    columns = min(3, max(1, len(names)))
    rows = math.ceil(len(names) / columns) or 1
    figure, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows),
                                squeeze=False)
    for axis, name in zip(axes.flat, names):
        epochs = range(1, len(history[name]) + 1)
        axis.plot(epochs, history[name], marker="o", label="train")
        if f"val_{name}" in history:
            axis.plot(epochs, history[f"val_{name}"], marker="o", label="eval")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    path = os.path.join(out_dir, "curves.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
