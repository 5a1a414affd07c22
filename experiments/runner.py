"""Train and evaluate model variants over seeds on one transformed dataset; aggregate; report.

Every variant goes through the same transform (components.transform, reused while current), the same
trainer (model_keras.train.run_fn: early stopping and selection on valid NDCG@10 under one protocol)
and the same evaluator on the test split, for every protocol reported. Runs live under
OUT/runs/<variant>/<settings digest>/seed<k> and are reused by any command with the same settings.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import statistics
from dataclasses import dataclass, field

import tensorflow as tf

from components.transform import TransformConfig, output_is_current, run_transform
from model_keras import registry
from model_keras.config import ADDED_SETTINGS, POST_TRAINING_SETTINGS, ModelConfig
from model_keras.evaluation import METRICS, EvalProtocol, ModelScorer, evaluate
from model_keras.metrics import domain_rows, towers_line
from model_keras.train import run_fn
from schemas.vocabulary import Vocabulary


@dataclass
class Variant:
    """A named model configuration: settings applied over the base settings."""

    name: str
    settings: dict = field(default_factory=dict)


# Table 5's full model has all three of the paper's mechanisms; each ablation removes exactly one of them. The
# ablations name all three, so they stay one change from "full" whatever the default is ("syncrec": the default,
# which leaves SC-MIM out; config.DEVIATIONS).
MECHANISMS = {"use_lc_ntg": True, "use_sc_mim": True, "use_acmoe": True}
VARIANTS = {
    "syncrec": Variant("syncrec"),
    "full": Variant("full", MECHANISMS),
    **{name: Variant(name, {"architecture": name}) for name in registry.names() if name != "syncrec"},  # baselines
    "mmoe": Variant("mmoe", {"use_acmoe": False, "use_lc_ntg": False, "use_sc_mim": False}),
    "sdsr": Variant("sdsr", {"architecture": "sasrec", "mode": "sdsr"}),
    "w/o LC-NTG": Variant("w/o LC-NTG", {**MECHANISMS, "use_lc_ntg": False}),
    "w/o SC-MIM": Variant("w/o SC-MIM", {**MECHANISMS, "use_sc_mim": False}),
    "w/o ACMoE": Variant("w/o ACMoE", {**MECHANISMS, "use_acmoe": False}),
    "causal gates": Variant("causal gates", {**MECHANISMS, "causal_gates": True}),
    "Eq. 3 gates": Variant("Eq. 3 gates", {"causal_gates": False}),
    "paper losses": Variant("paper losses", {"preset": "paper"}),
}


def prepare_examples(input_path: str, input_format: str, out: str, max_len: int, domain_names: str = "") -> str:
    """OUT/examples from the input (the transform's defaults otherwise); reused when already current."""
    config = TransformConfig(
        input=input_path,
        format=input_format,
        output=os.path.join(out, "examples"),
        max_len=max_len,
        domain_names=[d for d in domain_names.split(",") if d],
    )
    if not output_is_current(config):
        run_transform(config)
    return config.output


def run_folder(out: str, variant: Variant, config: ModelConfig, protocol: EvalProtocol) -> str:
    """OUT/runs/<variant>/<digest of every training setting and the selection protocol>/seed<k>.

    A variant whose settings train the same model as a variant that already ran (the same digest) reuses that
    variant's folder. Post-training settings (config.POST_TRAINING_SETTINGS) are left out: run_fn applies them to a
    finished run without training it again. So is a setting added later at the value that trains as the code before it
    did (config.ADDED_SETTINGS): the runs recorded before it existed keep their folders."""
    settings = {
        k: v
        for k, v in config.to_dict().items()
        if k not in POST_TRAINING_SETTINGS and not (k in ADDED_SETTINGS and v == ADDED_SETTINGS[k])
    }
    key = json.dumps({**settings, "selection": protocol.describe()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    own = os.path.join(out, "runs", variant.name.replace("/", "_").replace(" ", "_"), digest, f"seed{config.seed}")
    # The digest is every training setting, so a run of another variant under the same digest trained this very
    # model (Table 5's "w/o SC-MIM" is today's default, "syncrec"): reuse it rather than train it twice.
    same = sorted(glob.glob(os.path.join(glob.escape(out), "runs", "*", digest, f"seed{config.seed}")))
    return own if os.path.isdir(own) or not same else same[0]


def run_variants(
    examples: str,
    out: str,
    variants: list[Variant],
    seeds: int,
    base: dict,
    protocol: EvalProtocol = EvalProtocol(),
    report: tuple[EvalProtocol, ...] = (),
) -> dict:
    """{variant: {"seeds": [test results], "also": {protocol: [test results]}, "epochs": [(best, last)],
    "valid": [the valid NDCG@10 the epoch was selected on], "valid_served": [the same weights' valid NDCG@10 as
    served, after the per-domain tower choice], "valid_also": {protocol: [{domain: valid NDCG@10 as served}]},
    "histories": [...], "towers": [{domain: tower}], "train_time": [(seconds, epochs they timed)]}}.

    The two valid figures differ only for SyNCRec when a domain moved to its single tower: the choice itself was
    made on valid, so the served figure is the better of two views of one split, not a selection value that
    could be compared with another model's.

    Seeds are the outer loop, so every variant has a first seed before any has a second. Each model
    is selected on valid under `protocol` and evaluated on test under `protocol` and each of `report`; valid is
    scored under each of `report` too, so that configurations can be compared under another protocol without
    reading test (99 negatives on valid need not rank models as 999 do).
    """
    vocabulary = Vocabulary.load(os.path.join(examples, "vocabulary.json"))
    results = {
        v.name: {
            "seeds": [],
            "also": {p.describe(): [] for p in report},
            "epochs": [],
            "valid": [],
            "valid_served": [],
            "valid_also": {p.describe(): [] for p in report},
            "histories": [],
            "towers": [],
            "train_time": [],
        }
        for v in variants
    }
    for seed in range(seeds):
        for variant in variants:
            config = ModelConfig.from_dict({**base, **variant.settings, "seed": seed})
            folder = run_folder(out, variant, config, protocol)
            summary = run_fn(examples, folder, config, protocol=protocol, verbose=0, export=False)
            scorer = ModelScorer(summary["model"])  # what the model serves (per domain, its chosen tower)
            entry = results[variant.name]
            entry["seeds"].append(evaluate(scorer, examples, "test", vocabulary, protocol))
            for extra in report:
                entry["also"][extra.describe()].append(evaluate(scorer, examples, "test", vocabulary, extra))
                valid = evaluate(scorer, examples, "valid", vocabulary, extra)
                entry["valid_also"][extra.describe()].append({d: r["NDCG@10"] for d, r in domain_rows(valid).items()})
            entry["epochs"].append((summary["best_epoch"], summary["last_epoch"]))
            entry["train_time"].append(training_time(folder))
            entry["valid"].append(summary.get("valid_at_selection", summary["valid"])["all"]["NDCG@10"])
            entry["valid_served"].append(summary["valid"]["all"]["NDCG@10"])
            towers = summary.get("prediction_towers") or {}
            entry["towers"].append({domain: choice["tower"] for domain, choice in towers.items()})
            entry["histories"].append(
                {k: v for k, v in summary["loss_history"].items() if k.startswith(("lambda/", "phi/"))}
            )
            print(seed_line(variant.name, seed, entry, protocol), flush=True)
    return results


def seed_line(name: str, seed: int, entry: dict, protocol: EvalProtocol) -> str:
    """What the table will say of one finished seed, printed as soon as it is scored. A command over several
    models and seeds runs for hours on a small machine and writes its tables only at the end; this line is what a
    user reads meanwhile, or after a kill (the runs are kept and reused: rerunning re-scores them)."""

    def ndcg(result: dict) -> str:
        domains = ", ".join(f"{d} {r['NDCG@10']:.4f}" for d, r in result["domains"].items())
        return f"{result['all']['NDCG@10']:.4f} ({domains})"

    best, last = entry["epochs"][-1]
    served_by = towers_line({domain: {"tower": tower} for domain, tower in entry["towers"][-1].items()})
    parts = [
        f"  {name} seed {seed}: best epoch {best} of {last}, training {run_time(*entry['train_time'][-1], last)}",
        f"valid NDCG@10 {entry['valid'][-1]:.4f} selecting, {entry['valid_served'][-1]:.4f} served"
        + (f" ({served_by})" if served_by else ""),
        f"test NDCG@10 {ndcg(entry['seeds'][-1])} under {protocol.describe()}",
    ]
    for described, runs in entry["also"].items():
        parts.append(f"under {described}: valid {entry['valid_also'][described][-1]['all']:.4f}, test {ndcg(runs[-1])}")
    return "; ".join(parts)


def aggregate(results: dict, key: str | None = None) -> dict:
    """model -> domain -> metric -> {mean, std} (std over seeds; 0 for one seed); `key`: an extra protocol."""
    table = {}
    for model, entry in results.items():
        runs = entry["seeds"] if key is None else entry["also"][key]
        table[model] = {}
        for domain in domain_rows(runs[0]):
            rows = [domain_rows(run)[domain] for run in runs]
            table[model][domain] = {
                m: {"mean": statistics.fmean(r[m] for r in rows), "std": statistics.pstdev([r[m] for r in rows])}
                for m in METRICS
            }
            table[model][domain]["users"] = rows[0]["users"]
            if domain != "all" and any(entry.get("towers", ())):  # which tower served the domain, seed by seed
                table[model][domain]["towers"] = [towers.get(domain, "cross") for towers in entry["towers"]]
    return table


def per_seed(results: dict, protocol: EvalProtocol, report: tuple[EvalProtocol, ...] = ()) -> dict:
    """model -> one record per seed: best/last epoch, the valid NDCG@10 it was selected on, and test
    (protocol -> domain -> metric). A seed fixes the data order and the negatives for every model, so two
    models can be compared seed by seed (a paired difference), which a mean ± std alone cannot show."""
    records = {}
    for model, entry in results.items():
        protocols = {protocol.describe(): entry["seeds"], **{p.describe(): entry["also"][p.describe()] for p in report}}
        records[model] = [
            {
                "seed": seed,
                "best_epoch": best,
                "last_epoch": last,
                "valid_NDCG@10": entry["valid"][seed],  # what selected the epoch
                "valid_NDCG@10_served": entry["valid_served"][seed],  # after the tower choice (made on valid)
                "valid_NDCG@10_also": {name: runs[seed] for name, runs in entry["valid_also"].items()},
                "prediction_towers": entry["towers"][seed],  # {} for a model with one tower
                "test": {
                    name: {
                        domain: {m: result[m] for m in METRICS} for domain, result in domain_rows(runs[seed]).items()
                    }
                    for name, runs in protocols.items()
                },
            }
            for seed, (best, last) in enumerate(entry["epochs"])
        ]
    return records


def epochs_line(results: dict) -> str:
    """'best/last epoch per seed' for each model: where best = last, the run had not converged."""
    parts = []
    for model, entry in results.items():
        pairs = ", ".join(f"{best}/{last}" for best, last in entry["epochs"])
        parts.append(f"{model} {pairs}")
    return "best/last epoch per seed: " + "; ".join(parts)


def training_time(run_dir: str) -> tuple[float, int]:
    """(seconds, epochs) of training the run's TensorBoard log timed: each process that trained writes one event
    file, opened when fit starts and written at each epoch's end (after its validation and checkpoint), so the
    span of every file is the time its epochs took, and a restart's gap and a killed epoch count in neither."""
    seconds, epochs = 0.0, 0
    for path in glob.glob(os.path.join(run_dir, "logs", "train", "events.out.tfevents.*")):
        opened, ends = None, []
        try:
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                opened = event.wall_time if opened is None else opened
                if any(value.tag == "epoch_loss" for value in event.summary.value):
                    ends.append(event.wall_time)
        except tf.errors.DataLossError:  # a process killed mid-write: the epochs before its last record count
            pass
        if ends:
            seconds, epochs = seconds + ends[-1] - opened, epochs + len(ends)
    return seconds, epochs


def training_time_line(results: dict) -> str:
    """Seconds an epoch and the whole run's training time, per model and seed: the wall clock of training (each
    epoch's validation included) on this machine, divided by the epochs it timed (`training_time`) and scaled to
    the run's last epoch, so a run killed and resumed is priced whole. Beside other work the clock runs slower:
    a report quoting it says which it was."""
    parts = []
    for model, entry in results.items():
        runs = []
        for (seconds, timed), (_, last) in zip(entry["train_time"], entry["epochs"]):
            runs.append(run_time(seconds, timed, last))
        parts.append(f"{model} " + ", ".join(runs))
    return "training time per seed (wall clock of fit with validation): " + "; ".join(parts)


def run_time(seconds: float, timed: int, last: int) -> str:
    """'27 s x 50 epochs = 23 min': one run's seconds an epoch over the epochs it timed, scaled to its last epoch."""
    if not seconds or not timed:
        return "not timed"
    per_epoch = seconds / timed
    return f"{per_epoch:.0f} s x {last} epochs = {per_epoch * last / 60:.0f} min"


def valid_line(results: dict, protocol: str | None = None) -> str:
    """The valid NDCG@10 (all domains, as served) of each model per seed, under the selection protocol (None) or
    a reported one: the figure to compare configurations on under that protocol without reading test."""
    parts = []
    for model, entry in results.items():
        values = entry["valid_served"] if protocol is None else [v["all"] for v in entry["valid_also"][protocol]]
        parts.append(f"{model} " + ", ".join(f"{v:.4f}" for v in values))
    return "valid NDCG@10 per seed, as served: " + "; ".join(parts)


def markdown_table(table: dict, metrics=METRICS, title: str = "", published: dict | None = None) -> str:
    """One row per (model, domain), as Table 2 of the paper turned on its side; with a "served by" column (the
    tower of each seed: SyNCRec's per-domain choice; "-" for models with one tower) when any model chose.
    `published` (experiments.published.published_rows): other systems' published figures on the same data and
    protocol, a row per domain after ours, "–" where a metric was not published."""
    towers = any("towers" in values for by_domain in table.values() for values in by_domain.values())
    lines = [f"### {title}", ""] if title else []
    lines += [
        "| model | domain | users | " + " | ".join(metrics) + (" | served by (per seed)" if towers else "") + " |",
        "|---|---|---:|" + "---:|" * len(metrics) + ("---|" if towers else ""),
    ]
    for model, by_domain in table.items():
        for domain, values in by_domain.items():
            cells = [f"{values[m]['mean']:.4f} ± {values[m]['std']:.4f}" for m in metrics]
            if towers:
                cells.append(", ".join(values["towers"]) if "towers" in values else "-")
            lines.append(f"| {model} | {domain} | {values['users']} | " + " | ".join(cells) + " |")
    for system, by_domain in (published or {}).items():
        for domain, figures in by_domain.items():
            cells = [f"{figures[m]:.4f}" if m in figures else "–" for m in metrics] + (["-"] if towers else [])
            lines.append(f"| {system} | {domain} | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_info(args: dict) -> dict:
    """Arguments and versions, for the .run.json beside each table."""
    import apache_beam
    import tensorflow as tf

    return {
        "args": args,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "apache_beam": apache_beam.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def write_outputs(out: str, name: str, table: dict, markdown: str, info: dict) -> None:
    """OUT/<name>.json, .md and .run.json."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.json"), "w", encoding="utf-8") as handle:
        json.dump(table, handle, indent=1)
    with open(os.path.join(out, f"{name}.md"), "w", encoding="utf-8") as handle:
        handle.write(markdown + "\n")
    with open(os.path.join(out, f"{name}.run.json"), "w", encoding="utf-8") as handle:
        json.dump(info, handle, indent=1)
