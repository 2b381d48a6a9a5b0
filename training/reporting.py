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

    from training.pipeline_report import curves_figure

    # The pipeline report draws its curves with the same figure.
    figure = curves_figure(plt, history, title)
    if figure is None:  # nothing finite was logged
        figure = plt.figure(figsize=(4.6, 3.4))
        figure.suptitle(f"{title}: no finite values logged")
    path = os.path.join(out_dir, "curves.png")
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
