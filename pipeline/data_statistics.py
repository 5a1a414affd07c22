"""What a cross-domain sequential recommender's data looks like, and how far today's data drifted from the data
the served model learned from.

Statistics (stored with every pushed model as assets.extra/data_statistics.json): users, events and items per
domain and each domain's share of events (the domain mix), the history-length distribution, the share of users
active in several domains within their last T events (what cross-domain transfer feeds on), the share of
those events on the most popular 1% of items, each domain's OOV rate, and the share of test labels that the
served model's vocabulary has never seen.

The drift check follows TFX's ExampleValidator comparators: L-infinity distance on categorical distributions
(the domain mix), Jensen-Shannon divergence on binned numeric ones (history lengths), plus absolute changes of
the shares above. Each has a threshold (`drift_max_*` pipeline settings); each anomaly names the statistic,
both values and the threshold.
"""

from __future__ import annotations

import json
import math
import os
import numpy as np

STATISTICS_FILE = "data_statistics.json"
HEAD_FRACTION = 0.01  # "head" items: the most popular 1%


def example_statistics(examples_dir: str, served_vocabulary=None) -> dict:
    """The statistics of one Transform output; `served_vocabulary` (a Vocabulary) adds the new-label share."""
    from model_keras.input_fn import make_dataset
    from schemas.vocabulary import Vocabulary

    with open(os.path.join(examples_dir, "stats.json"), encoding="utf-8") as handle:
        stats = json.load(handle)
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    oov_ids = np.array([d.oov_id for d in vocabulary.domains])
    size = vocabulary.num_domains + 1
    window_events, oov_events = np.zeros(size, np.int64), np.zeros(size, np.int64)
    item_counts = np.zeros(vocabulary.num_items, np.int64)
    users = multi = 0
    labels: list[tuple[int, str]] = []
    names = vocabulary.item_names()
    for batch in make_dataset(examples_dir, "test", vocabulary.num_domains, batch_size=512):  # one pass, vectorised
        ids, domains = batch["item"].numpy(), batch["domain"].numpy()
        real = domains > 0
        users += len(ids)
        present = np.stack([(domains == d).any(axis=1) for d in range(1, size)], axis=1)
        multi += int(np.sum(present.sum(axis=1) > 1))
        window_events += np.bincount(domains[real], minlength=size)
        item_counts += np.bincount(ids[real], minlength=vocabulary.num_items)
        is_oov = real & np.isin(ids, oov_ids)
        oov_events += np.bincount(domains[is_oov], minlength=size)
        labels += [
            (d, names[i]) for d, i in zip(batch["label_domain"].numpy().tolist(), batch["label_item"].numpy().tolist())
        ]
    counts = sorted(item_counts[item_counts > 0].tolist(), reverse=True)
    total = max(sum(d["interactions"] for d in stats["domains"].values()), 1)
    head = max(1, math.ceil(HEAD_FRACTION * len(counts))) if counts else 0
    result = {
        "users": stats["users"],
        "events": stats["interactions"],
        "items": stats["items"],
        "domains": {
            name: {
                "users": d["users"],
                "events": d["interactions"],
                "items": d["items"],
                "share": d["interactions"] / total,
                "oov_rate": float(oov_events[d["id"]] / max(window_events[d["id"]], 1)),
            }
            for name, d in stats["domains"].items()
        },
        "history_length": stats["length_histogram"],
        "multi_domain_user_share": multi / max(users, 1),
        "head_item_share": sum(counts[:head]) / max(sum(counts), 1),
    }
    if served_vocabulary is not None:
        known = {(d.name, item) for d in served_vocabulary.domains for item in d.items}
        domain_names = [""] + vocabulary.domain_names
        unseen = sum((domain_names[d], item) not in known for d, item in labels)
        result["new_label_share"] = unseen / max(len(labels), 1)
    return result


def _distribution(values: dict) -> dict:
    total = sum(values.values())
    return {k: v / total for k, v in values.items()} if total else {k: 0.0 for k in values}


def l_infinity(p: dict, q: dict) -> float:
    """max |p - q| over the union of categories (TFX's categorical drift comparator)."""
    return max((abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q)), default=0.0)


def jensen_shannon(p: dict, q: dict) -> float:
    """Jensen-Shannon divergence (base 2, in [0, 1]) of two binned distributions (TFX's numeric comparator)."""
    keys = sorted(set(p) | set(q))
    a, b = np.array([p.get(k, 0.0) for k in keys]), np.array([q.get(k, 0.0) for k in keys])
    a, b = a / max(a.sum(), 1e-12), b / max(b.sum(), 1e-12)
    m = (a + b) / 2

    def kl(x, y):
        mask = x > 0
        return float(np.sum(x[mask] * np.log2(x[mask] / y[mask])))

    return 0.5 * kl(a, m) + 0.5 * kl(b, m)


def drift_rows(current: dict, served: dict, thresholds: dict) -> list[dict]:
    """Every compared statistic: {"statistic", "current", "served", "value", "threshold", "anomaly"}."""
    rows = []

    def add(statistic, now, before, value, threshold):
        rows.append(
            {
                "statistic": statistic,
                "current": now,
                "served": before,
                "value": value,
                "threshold": threshold,
                "anomaly": value > threshold,
            }
        )

    mix_now = {k: v["share"] for k, v in current["domains"].items()}
    mix_before = {k: v["share"] for k, v in served["domains"].items()}
    add("domain mix (L-infinity)", mix_now, mix_before, l_infinity(mix_now, mix_before), thresholds["domain_mix"])
    lengths = jensen_shannon(_distribution(current["history_length"]), _distribution(served["history_length"]))
    add("history length (Jensen-Shannon)", current["history_length"], served["history_length"], lengths, thresholds["history_length"])
    now, before = current["multi_domain_user_share"], served["multi_domain_user_share"]
    add("multi-domain user share", now, before, abs(now - before), thresholds["multi_domain"])
    for name, stats in current["domains"].items():
        before = served["domains"].get(name, {}).get("oov_rate", 0.0)
        add(f"OOV rate, {name}", stats["oov_rate"], before, abs(stats["oov_rate"] - before), thresholds["oov_rate"])
    if "new_label_share" in current:
        share = current["new_label_share"]
        add("test labels the served model never saw", share, None, share, thresholds["new_labels"])
    return rows


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def drift_table(rows: list[dict]) -> str:
    """The drift checks as a Markdown table (statistic, value, threshold, both sides)."""
    lines = ["| statistic | distance | threshold | now | served model's data | |", "|---|---:|---:|---|---|---|"]
    for r in rows:
        flag = "**anomaly**" if r["anomaly"] else "ok"
        lines.append(
            f"| {r['statistic']} | {r['value']:.4f} | {r['threshold']} | {_short(r['current'])} | "
            f"{_short(r['served'])} | {flag} |"
        )
    return "\n".join(lines)


def drift_anomaly_lines(rows: list[dict]) -> list[str]:
    """One line per anomaly: the statistic, both values and the threshold."""
    return [
        f"drift: {r['statistic']} is {r['value']:.4f}, over its threshold {r['threshold']} "
        f"(now: {_short(r['current'])}; the served model's data: {_short(r['served'])})"
        for r in rows
        if r["anomaly"]
    ]


def served_statistics(baseline_dir: str) -> dict | None:
    """The statistics stored with a pushed model (None for a model pushed before they were stored)."""
    path = os.path.join(baseline_dir, "assets.extra", STATISTICS_FILE) if baseline_dir else ""
    if not path or not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
