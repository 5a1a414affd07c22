"""Train and evaluate model variants over seeds on one transformed dataset; aggregate; report.

Every variant goes through the same transform (components.transform, reused while current), the same
trainer (model_keras.train.run_fn: epoch chosen on valid) and the same evaluator on the test split
(99 negatives from the label's domain, identical for every model).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
from dataclasses import dataclass, field

from components.transform import TransformConfig, output_is_current, run_transform
from schemas.vocabulary import Vocabulary
from model_keras.config import ModelConfig
from model_keras.evaluation import METRICS, EvalProtocol, ModelScorer, evaluate
from model_keras.train import run_fn


@dataclass
class Variant:
    name: str
    settings: dict = field(default_factory=dict)


VARIANTS = {
    "syncrec": Variant("syncrec"),
    "sasrec": Variant("sasrec", {"architecture": "sasrec"}),
    "gru4rec": Variant("gru4rec", {"architecture": "gru4rec"}),
    "bprmf": Variant("bprmf", {"architecture": "bprmf"}),
    "mmoe": Variant("mmoe", {"use_acmoe": False, "use_lc_ntg": False, "use_sc_mim": False}),
    "sdsr": Variant("sdsr", {"architecture": "sasrec", "mode": "sdsr"}),
    "w/o LC-NTG": Variant("w/o LC-NTG", {"use_lc_ntg": False}),
    "w/o SC-MIM": Variant("w/o SC-MIM", {"use_sc_mim": False}),
    "w/o ACMoE": Variant("w/o ACMoE", {"use_acmoe": False}),
}


def prepare_examples(input_path: str, input_format: str, out: str, max_len: int, domain_names: str = "") -> str:
    """OUT/examples from the input (the transform's defaults otherwise); reused when already current."""
    config = TransformConfig(input=input_path, format=input_format, output=os.path.join(out, "examples"), max_len=max_len,
                             domain_names=[d for d in domain_names.split(",") if d])
    if not output_is_current(config):
        run_transform(config)
    return config.output


def run_variants(examples: str, out: str, variants: list[Variant], seeds: int, base: dict, protocol: EvalProtocol = EvalProtocol()) -> dict:
    """{variant: {"seeds": [test results], "histories": [...]}}; each run under out/runs/<variant>/seed<k>."""
    vocabulary = Vocabulary.load(os.path.join(examples, "vocabulary.json"))
    results = {}
    for variant in variants:
        runs, histories = [], []
        for seed in range(seeds):
            config = ModelConfig.from_dict({**base, **variant.settings, "seed": seed})
            # Keyed on the full settings: another command with the same settings reuses the run.
            digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
            folder = os.path.join(out, "runs", variant.name.replace("/", "_").replace(" ", "_"), digest, f"seed{seed}")
            summary = run_fn(examples, folder, config, protocol=protocol, verbose=0, export=False)
            view = "single" if config.mode == "sdsr" else "cross"
            runs.append(evaluate(ModelScorer(summary["model"], view), examples, "test", vocabulary, protocol))
            histories.append({k: v for k, v in summary["loss_history"].items() if k.startswith(("lambda/", "phi/"))})
            print(f"  {variant.name} seed {seed}: test NDCG@10 {runs[-1]['all']['NDCG@10']:.4f} (best epoch {summary['best_epoch']})", flush=True)
        results[variant.name] = {"seeds": runs, "histories": histories}
    return results


def aggregate(results: dict) -> dict:
    """model -> domain -> metric -> {mean, std} (std over seeds; 0 for one seed)."""
    table = {}
    for model, entry in results.items():
        domains = list(entry["seeds"][0]["domains"]) + ["all"]
        table[model] = {}
        for domain in domains:
            rows = [run["domains"][domain] if domain != "all" else run["all"] for run in entry["seeds"]]
            table[model][domain] = {m: {"mean": statistics.fmean(r[m] for r in rows), "std": statistics.pstdev([r[m] for r in rows])} for m in METRICS}
            table[model][domain]["users"] = rows[0]["users"]
    return table


def markdown_table(table: dict, metrics=METRICS, title: str = "") -> str:
    """One row per (model, domain), as Table 2 of the paper turned on its side."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| model | domain | users | " + " | ".join(metrics) + " |", "|---|---|---:|" + "---:|" * len(metrics)]
    for model, by_domain in table.items():
        for domain, values in by_domain.items():
            cells = [f"{values[m]['mean']:.4f} ± {values[m]['std']:.4f}" for m in metrics]
            lines.append(f"| {model} | {domain} | {values['users']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_info(args: dict) -> dict:
    import apache_beam
    import tensorflow as tf

    return {"args": args, "python": platform.python_version(), "tensorflow": tf.__version__, "apache_beam": apache_beam.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count()}


def write_outputs(out: str, name: str, table: dict, markdown: str, info: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=1)
    with open(os.path.join(out, f"{name}.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    with open(os.path.join(out, f"{name}.run.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=1)
