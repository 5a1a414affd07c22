"""PNG figures for the experiment reports (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def grouped_bars(table: dict, metric: str, path: str, title: str) -> None:
    """One group of bars per domain, one bar per model, with std error bars."""
    models = list(table)
    domains = list(table[models[0]])
    x = np.arange(len(domains))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(domains)), 4))
    for i, model in enumerate(models):
        means = [table[model][d][metric]["mean"] for d in domains]
        stds = [table[model][d][metric]["std"] for d in domains]
        ax.bar(x + i * width - 0.4 + width / 2, means, width, yerr=stds, label=model)
    ax.set_xticks(x, [d[:14] for d in domains], rotation=20)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lines(xs: list, series: dict[str, list[float]], path: str, title: str, xlabel: str, ylabel: str) -> None:
    """One line per series against `x`, saved as a PNG; a grid of positive numbers spanning 8x or more (r, negatives:
    usually doubled) on a log2 axis, so that each doubling is one step."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, ys in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    if all(isinstance(x, (int, float)) and x > 0 for x in xs) and max(xs) >= 8 * min(xs):
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 60), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
