"""The history of pushes, kept beside the serving root: one JSON line per pushed version.

<serving_root>/history/<model_name>.jsonl holds, for every version the Pusher wrote: when, whether as
canary, the data statistics (pipeline.data_statistics), per-domain test and valid metrics, lambda and phi per
domain at the selected epoch, the tower serving each domain, the blessing reasons and the training time. The
Pusher appends under the push lock; `python -m pipeline history --root DIR` prints it as a Markdown table and
plots per-domain NDCG@10 and lambda over versions. TF Serving ignores the folder (it holds no version).
"""

from __future__ import annotations

import json
import os
import time

HISTORY_DIR = "history"


def history_path(serving_root: str, model_name: str) -> str:
    return os.path.join(serving_root, HISTORY_DIR, f"{model_name}.jsonl")


def at_best_epoch(training: dict, term: str) -> dict:
    """{domain: value} of a per-domain training term (lambda, phi) at the selected epoch ({} if none)."""
    best = training.get("best_epoch") or 0
    found = {}
    for key, values in (training.get("loss_history") or {}).items():
        if key.startswith(f"{term}/") and best and len(values) >= best and values[best - 1] is not None:
            found[key.split("/", 1)[1]] = values[best - 1]
    return found


def push_record(version_path: str, evaluation: dict, training: dict, statistics: dict, canary: bool) -> dict:
    """What the history keeps of one push."""
    towers = training.get("prediction_towers") or {}
    return {
        "version": int(os.path.basename(version_path)),
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "canary": canary,
        "data": {
            "users": statistics.get("users"),
            "events": statistics.get("events"),
            "domain_share": {k: v["share"] for k, v in statistics.get("domains", {}).items()},
            "multi_domain_user_share": statistics.get("multi_domain_user_share"),
            "new_label_share": statistics.get("new_label_share"),
        },
        "test": {d: {m: v[m] for m in ("HR@10", "NDCG@10", "MRR")} for d, v in evaluation["test"]["domains"].items()},
        "test_all_ndcg10": evaluation["test"]["all"]["NDCG@10"],
        "valid": {d: v["NDCG@10"] for d, v in evaluation["valid"]["domains"].items()},
        "lambda": at_best_epoch(training, "lambda"),
        "phi": at_best_epoch(training, "phi"),
        "towers": {d: t.get("tower", "cross") for d, t in towers.items()},
        "blessing": evaluation.get("reasons", []),
        "best_epoch": training.get("best_epoch"),
        "last_epoch": training.get("last_epoch"),
        "train_seconds": training.get("train_seconds_total", training.get("train_seconds")),
    }


def append(serving_root: str, model_name: str, record: dict) -> str:
    """Add one record (call with the push lock held); the file is rewritten whole and swapped in."""
    path = history_path(serving_root, model_name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records = [r for r in read(serving_root, model_name) if r["version"] != record["version"]] + [record]
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, sort_keys=True) + "\n" for r in records)
    os.replace(path + ".tmp", path)
    return path


def read(serving_root: str, model_name: str) -> list[dict]:
    """Every pushed version's record, oldest first ([] before the first push)."""
    path = history_path(serving_root, model_name)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return sorted((json.loads(line) for line in handle if line.strip()), key=lambda r: r["version"])


def domains_of(records: list[dict]) -> list[str]:
    return sorted({d for r in records for d in r["test"]})


def markdown_table(records: list[dict]) -> str:
    """One row per pushed version: data, test NDCG@10 and lambda per domain, towers, epochs, training time."""
    domains = domains_of(records)
    head = ["version", "pushed (UTC)", "users", "events"] + [f"NDCG@10 {d}" for d in domains]
    head += [f"λ {d}" for d in domains] + ["single tower", "best/last epoch", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in records:
        single = [d for d, t in r.get("towers", {}).items() if t == "single"]
        cells = [
            f"{r['version']}{' (canary)' if r.get('canary') else ''}",
            r["pushed_at"].replace("T", " ").rstrip("Z"),
            f"{r['data']['users']:,}" if r["data"].get("users") is not None else "-",
            f"{r['data']['events']:,}" if r["data"].get("events") is not None else "-",
        ]
        cells += [f"{r['test'][d]['NDCG@10']:.4f}" if d in r["test"] else "-" for d in domains]
        cells += [f"{r['lambda'][d]:.3f}" if d in r.get("lambda", {}) else "-" for d in domains]
        cells += [", ".join(single) or "none", f"{r.get('best_epoch')}/{r.get('last_epoch')}", f"{r.get('train_seconds') or 0:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> str:
    """Per-domain test NDCG@10 and lambda over pushed versions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    domains = domains_of(records)
    steps = list(range(1, len(records) + 1))
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for d in domains:
        top.plot(steps, [r["test"].get(d, {}).get("NDCG@10") for r in records], marker="o", label=d)
        bottom.plot(steps, [r.get("lambda", {}).get(d) for r in records], marker="o", label=d)
    top.set_ylabel("test NDCG@10")
    bottom.set_ylabel("λ at the selected epoch")
    bottom.set_xlabel("pushed version (1 = oldest)")
    bottom.set_xticks(steps, [str(r["version"]) for r in records], rotation=30, fontsize=7)
    top.legend(fontsize=7, loc="best")
    top.set_title("syncrec: every pushed version")
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
