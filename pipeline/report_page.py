"""The run's report as a person reads it: Markdown and a self-contained HTML page (plots embedded).

Kubeflow's run page renders a component's `Markdown` and `HTML` output artifacts; run-local writes the same
page to ROOT/report/index.html. Sections: the result against chance and against the served model, the drift
of this run's data from the served model's, lambda/phi and the tower serving each domain, and the history of
pushes with its plot.
"""

from __future__ import annotations

import base64
import io
import math
import tempfile

import markdown as markdown_lib

from pipeline import history
from pipeline.data_statistics import drift_table


def chance_ndcg10(num_negatives: int) -> float:
    """Expected NDCG@10 of a random ranking of the label among 1 + num_negatives candidates."""
    candidates = num_negatives + 1
    return sum(1 / math.log2(rank + 1) for rank in range(1, min(10, candidates) + 1)) / candidates


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return base64.b64encode(buffer.getvalue()).decode()


def _terms_plot(training: dict) -> str | None:
    """lambda and phi per domain over epochs (base64 PNG), None for a model without them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    terms = training.get("loss_history") or {}
    lam = {k.split("/", 1)[1]: v for k, v in terms.items() if k.startswith("lambda/")}
    phi = {k.split("/", 1)[1]: v for k, v in terms.items() if k.startswith("phi/")}
    if not lam:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for d, values in lam.items():
        left.plot(range(1, len(values) + 1), values, label=d)
    for d, values in phi.items():
        right.plot(range(1, len(values) + 1), values, label=d)
    for axis, name in ((left, "λ (LC-NTG weight)"), (right, "φ (single − cross loss)")):
        axis.set_xlabel("epoch")
        axis.set_title(name, fontsize=9)
        if training.get("best_epoch"):
            axis.axvline(training["best_epoch"], color="grey", linestyle=":", linewidth=1)
    left.legend(fontsize=7)
    figure.tight_layout()
    encoded = _png(figure)
    plt.close(figure)
    return encoded


def _history_plot(records: list[dict]) -> str | None:
    if not records:
        return None
    with tempfile.NamedTemporaryFile(suffix=".png") as handle:
        history.plot(records, handle.name)
        return base64.b64encode(open(handle.name, "rb").read()).decode()


def render(report: dict, evaluation: dict, training: dict, drift: dict | None, records: list[dict]) -> tuple[str, str]:
    """(Markdown, HTML) of one run."""
    from model_keras.protocol import EvalProtocol

    negatives = (evaluation.get("protocol") or {}).get("num_negatives", EvalProtocol.num_negatives)
    chance = chance_ndcg10(negatives)
    test_all = report["all"]["NDCG@10"]
    md = [
        "# syncrec run report",
        "",
        f"**{'Blessed and pushed to ' + report['pushed_to'] if report['pushed_to'] else 'Not pushed'}.** "
        f"Test NDCG@10 {test_all:.4f} against {chance:.4f} for a random ranking of the label among "
        f"{negatives + 1} candidates ({test_all / chance:.1f}x chance); best epoch {report['training']['best_epoch']} "
        f"of {report['training']['last_epoch']}.",
        "",
        "## Metrics per domain (test) and the blessing (valid, against the served model)",
        "",
        "| domain | users | HR@10 | NDCG@10 | MRR | valid NDCG@10 | served model's valid NDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    served = (evaluation.get("baseline_valid") or {}).get("domains", {})
    for domain, m in report["domains"].items():
        valid = evaluation["valid"]["domains"].get(domain, {}).get("NDCG@10")
        before = served.get(domain, {}).get("NDCG@10")
        md.append(
            f"| {domain} | {m['users']:,} | {m['HR@10']:.4f} | {m['NDCG@10']:.4f} | {m['MRR']:.4f} | "
            f"{valid:.4f} | {'-' if before is None else f'{before:.4f}'} |"
        )
    md += ["", *[f"- {reason}" for reason in report["blessing"]["reasons"]], "", "## Drift against the served model's data", ""]
    if drift and drift.get("rows"):
        md += [drift_table(drift["rows"]), ""]
        md += [f"- **{line}**" for line in drift.get("anomalies", [])] or ["No drift anomaly."]
    else:
        md.append("Nothing was served before this run (or it was pushed before data statistics were stored): no comparison.")
    md += ["", "## λ, φ and the tower serving each domain", ""]
    towers = training.get("prediction_towers") or {}
    lam, phi = history.at_best_epoch(training, "lambda"), history.at_best_epoch(training, "phi")
    if lam or towers:
        md += ["| domain | λ | φ | tower | single − cross valid NDCG@10 (± s.e.) |", "|---|---:|---:|---|---|"]
        for domain in report["domains"]:
            t = towers.get(domain, {})
            gain = f"{t['gain']:+.4f} ± {t['standard_error']:.4f}" if "gain" in t else "-"
            md.append(
                f"| {domain} | {lam.get(domain, float('nan')):.3f} | {phi.get(domain, float('nan')):.3f} | "
                f"{t.get('tower', 'cross')} | {gain} |"
            )
    else:
        md.append("This model has no λ or per-domain towers.")
    md += ["", "## History of pushes", ""]
    md += [history.markdown_table(records)] if records else ["No version pushed yet."]
    text = "\n".join(md) + "\n"
    body = markdown_lib.markdown(text, extensions=["tables"])
    images = [("λ and φ over epochs", _terms_plot(training)), ("every pushed version", _history_plot(records))]
    figures = "".join(
        f'<figure><img alt="{title}" src="data:image/png;base64,{data}"><figcaption>{title}</figcaption></figure>'
        for title, data in images
        if data
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>syncrec run report</title><style>"
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0;font-size:13px;display:block;overflow-x:auto;max-width:100%}td,th{border:1px solid #ccc;padding:3px 7px}"
        "th{background:#f2f2f2}figure{display:inline-block;margin:1em 1em 0 0}img{max-width:100%}"
        f"</style></head><body>{body}<h2>Plots</h2>{figures}</body></html>"
    )
    return text, page
