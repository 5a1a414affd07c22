"""Ranking metrics of leave-one-out evaluation and their table (NumPy only: no TensorFlow import,
so command lines can format reports without loading it)."""

from __future__ import annotations

import numpy as np

METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Mean metrics of 0-based ranks: HR@k = [rank < k], NDCG@k = [rank < k] / log2(rank + 2), MRR = 1 / (rank + 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {m: 0.0 for m in METRICS}
    gain = 1.0 / np.log2(ranks + 2.0)
    return {
        "HR@5": float(np.mean(ranks < 5)),
        "HR@10": float(np.mean(ranks < 10)),
        "NDCG@5": float(np.mean(np.where(ranks < 5, gain, 0.0))),
        "NDCG@10": float(np.mean(np.where(ranks < 10, gain, 0.0))),
        "MRR": float(np.mean(1.0 / (ranks + 1.0))),
    }


def domain_rows(result: dict) -> dict[str, dict]:
    """An evaluation result's metrics per domain, then "all" (the order every table and check reads them in)."""
    return {**result["domains"], "all": result["all"]}


def format_metrics(result: dict, title: str = "") -> str:
    """Markdown table: one row per domain plus 'all'."""
    lines = [f"**{title}**"] if title else []
    lines += ["| domain | users | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, m in domain_rows(result).items():
        lines.append(f"| {name} | {m['users']} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    return "\n".join(lines)


def towers_line(towers: dict | None) -> str:
    """'served by: Books single-domain tower, Toys cross tower' from training.json's prediction_towers ('' when
    the model has one tower): the one place reports spell the per-domain choice."""
    if not towers:
        return ""
    return "served by: " + ", ".join(
        f"{domain} {'single-domain' if choice['tower'] == 'single' else 'cross'} tower"
        for domain, choice in towers.items()
    )
