"""Ranking metrics of leave-one-out evaluation and their table (NumPy only: no TensorFlow import,
so command lines can format reports without loading it)."""

from __future__ import annotations

import numpy as np

METRICS = ("HR@5", "HR@10", "NDCG@5", "NDCG@10", "MRR")


def ndcg(ranks: np.ndarray, k: int) -> np.ndarray:
    """Each user's NDCG@k of a 0-based label rank: [rank < k] / log2(rank + 2) (one relevant item)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """Mean metrics of 0-based ranks: HR@k = [rank < k], NDCG@k (above), MRR = 1 / (rank + 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {m: 0.0 for m in METRICS}
    return {
        "HR@5": float(np.mean(ranks < 5)),
        "HR@10": float(np.mean(ranks < 10)),
        "NDCG@5": float(np.mean(ndcg(ranks, 5))),
        "NDCG@10": float(np.mean(ndcg(ranks, 10))),
        "MRR": float(np.mean(1.0 / (ranks + 1.0))),
    }


def paired_gain(base_ranks: np.ndarray, other_ranks: np.ndarray, k: int = 10) -> tuple[float, float]:
    """(mean, standard error) of the per-user NDCG@k gain of `other` over `base`, ranked on the same users and
    candidates. The mean is the difference of the two NDCG@k figures; the standard error (sample std / sqrt(n))
    says how much of it the particular users could explain (infinite below two users: nothing can be told)."""
    gains = ndcg(other_ranks, k) - ndcg(base_ranks, k)
    if gains.size < 2:
        return float(np.mean(gains)) if gains.size else 0.0, float("inf")
    return float(np.mean(gains)), float(np.std(gains, ddof=1) / np.sqrt(gains.size))


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
    the model has one tower; 'served by: the cross tower in every domain' when all domains agree): the one
    place reports spell the per-domain choice."""
    if not towers:
        return ""
    names = {"single": "single-domain", "cross": "cross", "both": "cross + single-domain"}
    kinds = {choice["tower"] for choice in towers.values()}
    if len(towers) > 1 and len(kinds) == 1:
        return f"served by: the {names[kinds.pop()]} tower in every domain"
    return "served by: " + ", ".join(f"{domain} {names[choice['tower']]} tower" for domain, choice in towers.items())
