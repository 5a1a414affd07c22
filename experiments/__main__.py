"""Reports of the paper's tables on any dataset the transform reads, at convergence.

    python -m experiments {compare,negative-transfer,ablation,sweep} [--input PATH --format FMT]
        [--models syncrec,sasrec,...] [--seeds N] [--set key=value ...] [--grid key=v1,v2,...]
        [--negatives 99] [--negatives-from {domain,all}] [--full-ranking] [--report-also 999:domain ...] --out DIR

compare            Table 2: per-domain HR@5/10, NDCG@5/10, MRR of SyNCRec and baselines (+ lambda/phi plot)
negative-transfer  Table 4: per-domain improvement (%) of each CDSR model over the SDSR model (SASRec on X^d)
ablation           Table 5: full SyNCRec (LC-NTG, SC-MIM and ACMoE), w/o LC-NTG, w/o SC-MIM, w/o ACMoE, causal gates
sweep              Fig. 3: one setting over values (default embed_dim 8..128), NDCG@10 per domain
diagnose           why: gate usage and entropy per task, per-expert gradient norms, lambda/phi, and NDCG@10
                   per domain through each tower (cross, single, served) of trained runs (seed 0, and the other seeds < --seeds that ran)
Every model trains until valid NDCG@10 stalls for `patience` epochs (not before `min_epochs`, at most
`epochs`) and is selected on valid under the protocol flags; test is reported under that protocol and each
--report-also one.
Each writes DIR/<name>.md, DIR/<name>.json (model -> domain -> metric -> {mean, std}), one
DIR/<name>.<protocol>.json per --report-also, DIR/<name>.png and DIR/<name>.run.json (arguments,
seeds, versions, each model's best and last epoch per seed, and per seed the valid NDCG@10 it was
selected on and its test metrics under every protocol, for paired comparisons).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from components.readers import InputError
from components.transform import DEFAULT_INPUT
from experiments import plots
from experiments.published import published_rows
from experiments.runner import (
    VARIANTS,
    Variant,
    aggregate,
    epochs_line,
    markdown_table,
    per_seed,
    prepare_examples,
    run_info,
    run_variants,
    training_time_line,
    valid_line,
    write_outputs,
)
from model_keras.config import PRESETS, ModelConfig, expand_preset, parse_settings
from model_keras.evaluation import EvalProtocol
from model_keras.train import add_protocol_flags, protocol_from_args
from schemas import sequence_settings

DEFAULT_MODELS = {
    "diagnose": "syncrec,mmoe,w/o ACMoE",
    "compare": "syncrec,sasrec,sdsr,mmoe,gru4rec,bprmf",
    "negative-transfer": "syncrec,sasrec,mmoe",
    "ablation": "full,w/o LC-NTG,w/o SC-MIM,w/o ACMoE,causal gates",
    "sweep": "syncrec",
}
BASE = PRESETS["experiments"]  # converged runs (the preset says why these values)
IMPROVEMENT_METRICS = ("HR@5", "NDCG@5", "MRR")


def _variants(names: str) -> list[Variant]:
    unknown = [n for n in names.split(",") if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(VARIANTS)}")
    return [VARIANTS[n] for n in names.split(",")]


def parse_protocol(text: str) -> EvalProtocol:
    """'999:domain', '100:all' or 'full' -> EvalProtocol (--report-also)."""
    if text == "full":
        return EvalProtocol(full_ranking=True)
    match = re.fullmatch(r"(\d+):(domain|all)", text)
    if not match:
        raise ValueError(f"--report-also {text!r} must be NEGATIVES:domain, NEGATIVES:all or full (e.g. 999:domain)")
    return EvalProtocol(num_negatives=int(match.group(1)), pool=match.group(2))


def slug(protocol: EvalProtocol) -> str:
    """A file-name suffix for a protocol (999-domain, full)."""
    return "full" if protocol.full_ranking else f"{protocol.num_negatives}-{protocol.pool}"


def _tables(results: dict, args) -> list[tuple[str, EvalProtocol, dict]]:
    """(file suffix, protocol, table) for the selection protocol and each --report-also protocol."""
    tables = [("", args.protocol, aggregate(results))]
    tables += [(f".{slug(p)}", p, aggregate(results, p.describe())) for p in args.report]
    return tables


def _run(args, examples, base, names: str) -> dict:
    return run_variants(examples, args.out, _variants(names), args.seeds, base, args.protocol, tuple(args.report))


def compare(args, examples, base):
    """Table 2: every model on every domain; also the lambda/phi plots."""
    results = _run(args, examples, base, args.models)
    outputs = [
        (
            suffix,
            table,
            markdown_table(
                table,
                title=f"Overall comparison (test, {p.describe()}, mean ± std over seeds)",
                published=published_rows(args.input, args.format, [n for n in args.domain_names.split(",") if n], p),
            ),
        )
        for suffix, p, table in _tables(results, args)
    ]
    plots.grouped_bars(outputs[0][1], "NDCG@10", os.path.join(args.out, "compare.png"), "NDCG@10 per domain")
    if "syncrec" in results and results["syncrec"]["histories"][0]:
        history = results["syncrec"]["histories"][0]
        epochs = list(range(1, len(next(iter(history.values()))) + 1))
        plots.lines(
            epochs,
            {k: v for k, v in history.items() if k.startswith("lambda/")},
            os.path.join(args.out, "lambda.png"),
            "relative NTG lambda per domain (epoch means)",
            "epoch",
            "lambda",
        )
        plots.lines(
            epochs,
            {k: v for k, v in history.items() if k.startswith("phi/")},
            os.path.join(args.out, "phi.png"),
            "negative transfer gap phi per domain (epoch means)",
            "epoch",
            "phi",
        )
    return results, outputs


def _improvement(table: dict, reference: dict) -> dict:
    """model -> domain -> metric -> {mean: % over the SDSR model, std: 0}."""
    improvement = {}
    for model, by_domain in table.items():
        improvement[model] = {}
        for domain, metrics in by_domain.items():
            improvement[model][domain] = {"users": metrics["users"]}
            for metric in IMPROVEMENT_METRICS:
                ref = reference[domain][metric]["mean"]
                value = 100.0 * (metrics[metric]["mean"] - ref) / ref if ref else 0.0
                improvement[model][domain][metric] = {"mean": value, "std": 0.0}
    return improvement


def _improvement_markdown(improvement: dict, domains: list[str], protocol: EvalProtocol) -> str:
    lines = [
        "### Improvement (%) of each CDSR model over the SDSR model (SASRec trained on X^d); "
        f"test, {protocol.describe()}",
        "",
    ]
    lines += ["| model | metric | " + " | ".join(domains) + " |", "|---|---|" + "---:|" * len(domains)]
    for model, by_domain in improvement.items():
        for metric in IMPROVEMENT_METRICS:
            lines.append(
                f"| {model} | {metric} | " + " | ".join(f"{by_domain[d][metric]['mean']:+.1f}" for d in domains) + " |"
            )
    negatives = {m: [d for d in domains if d != "all" and by[d]["MRR"]["mean"] < 0] for m, by in improvement.items()}
    lines += [
        "",
        "domains with negative transfer (MRR below SDSR): "
        + "; ".join(f"{m}: {v or 'none'}" for m, v in negatives.items()),
    ]
    return "\n".join(lines)


def negative_transfer(args, examples, base):
    """Table 4: each CDSR model's improvement over the SDSR model, per domain and protocol."""
    results = _run(args, examples, base, args.models + ",sdsr")
    outputs = []
    for suffix, protocol, table in _tables(results, args):
        reference = table.pop("sdsr")
        improvement = _improvement(table, reference)
        outputs.append(
            (
                suffix,
                {"improvement": improvement, "sdsr": reference, "cdsr": table},
                _improvement_markdown(improvement, list(reference), protocol),
            )
        )
    plots.grouped_bars(
        outputs[0][1]["improvement"],
        "MRR",
        os.path.join(args.out, "negative-transfer.png"),
        "MRR improvement over SDSR (%)",
    )
    return results, outputs


def ablation(args, examples, base):
    """Table 5: SyNCRec and its variants."""
    results = _run(args, examples, base, args.models)
    outputs = [
        (
            suffix,
            table,
            markdown_table(
                table, metrics=("NDCG@10", "MRR"), title=f"Ablation (test, {p.describe()}, mean ± std over seeds)"
            ),
        )
        for suffix, p, table in _tables(results, args)
    ]
    plots.grouped_bars(
        outputs[0][1], "MRR", os.path.join(args.out, "ablation.png"), "MRR per domain: SyNCRec and its variants"
    )
    return results, outputs


def sweep(args, examples, base):
    """Fig. 3: one setting over a grid of values."""
    key, _, values = (args.grid or "embed_dim=8,16,32,64,128").partition("=")
    parsed = [json.loads(v) for v in values.split(",")]
    variants, note = [], ""
    for value in parsed:
        settings = {key: value}
        if key == "num_experts" and "num_cross_experts" not in base:
            # ACMoE needs 1 <= j <= K-1: keep the default's share of cross-domain experts (3 of 4).
            settings["num_cross_experts"] = min(max(1, round(0.75 * value)), max(1, value - 1))
            note = " (j = round(0.75 K), within [1, K-1])"
        variants.append(Variant(f"{key}={value}", settings))
    results = run_variants(examples, args.out, variants, args.seeds, base, args.protocol, tuple(args.report))
    outputs = [
        (
            suffix,
            table,
            markdown_table(table, metrics=("NDCG@10", "MRR"), title=f"Sweep over {key}{note} (test, {p.describe()})"),
        )
        for suffix, p, table in _tables(results, args)
    ]
    for (suffix, table, _), (_, protocol, _) in zip(outputs, _tables(results, args)):  # one figure a protocol
        domains = list(next(iter(table.values())))
        plots.lines(
            parsed,
            {d: [table[f"{key}={v}"][d]["NDCG@10"]["mean"] for v in parsed] for d in domains},
            os.path.join(args.out, f"sweep{suffix}.png"),
            f"test NDCG@10 against {key} ({protocol.describe()})",
            key,
            "NDCG@10",
        )
    return results, outputs


def diagnose(args, examples, base):
    """Gate usage, per-expert gradients, lambda/phi and each tower's accuracy of trained runs, to see why a variant
    wins: the runs trained with these --set flags and protocol, seed 0 keyed by model (it must have run), and each
    other seed below --seeds that has a finished run, keyed 'model (seed k)'."""
    from experiments.diagnostics import diagnose as diagnose_run
    from experiments.diagnostics import find_run, markdown

    def settings(variant, seed):
        return ModelConfig.from_dict({**base, **variant.settings, "seed": seed})

    variants = _variants(args.models)
    runs = {v.name: (find_run(args.out, v, settings(v, 0), args.protocol), settings(v, 0)) for v in variants}
    for seed in range(1, args.seeds):
        for v in variants:
            try:
                runs[f"{v.name} (seed {seed})"] = (
                    find_run(args.out, v, settings(v, seed), args.protocol),
                    settings(v, seed),
                )
            except ValueError:
                continue  # that seed has not run: diagnose what has
    results = {key: diagnose_run(run, examples, args.protocol, config) for key, (run, config) in runs.items()}
    return None, [("", results, markdown(results))]


COMMANDS = {
    "compare": compare,
    "negative-transfer": negative_transfer,
    "ablation": ablation,
    "sweep": sweep,
    "diagnose": diagnose,
}


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--input", default=DEFAULT_INPUT)
    parser.add_argument("--format", default=None)
    parser.add_argument("--domain-names", default="", help="abxi: names of domain 0, 1, ...")
    parser.add_argument("--models", default=None, help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--max-len",
        type=int,
        default=None,
        help=f"{sequence_settings.doc('max_len')}; default: the model settings' max_len, else "
        f"{sequence_settings.default('max_len')}",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"model setting for every variant (defaults {BASE})",
    )
    parser.add_argument("--grid", default=None, help="sweep: key=v1,v2,... (default embed_dim=8,16,32,64,128)")
    add_protocol_flags(parser)
    parser.add_argument(
        "--report-also",
        action="append",
        default=[],
        metavar="N:POOL",
        help="also report test under this protocol: 999:domain (ABXI), 100:all (official SyNCRec code) or full",
    )
    parser.add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.models = args.models or DEFAULT_MODELS[args.command]
    fmt = args.format = args.format or ("syncrec" if args.input == DEFAULT_INPUT else "raw")
    try:
        if args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1 (got {args.seeds})")
        args.protocol = protocol_from_args(args)
        args.report = [parse_protocol(p) for p in args.report_also]
        sets = {k.removeprefix("model."): v for k, v in parse_settings(args.set).items()}
        base = {**BASE, **expand_preset(sets)}  # a preset asked for overrides the base, as any --set does
        max_len = args.max_len if args.max_len is not None else base.get("max_len", sequence_settings.default("max_len"))
        for variant in _variants(args.models):  # every setting checked before any work
            ModelConfig.from_dict({**base, **variant.settings}).validate_settings()
        os.makedirs(args.out, exist_ok=True)
        if args.command == "diagnose":  # reads finished runs and their examples as they are
            examples = os.path.join(args.out, "examples")
        else:
            examples = prepare_examples(args.input, fmt, args.out, max_len, args.domain_names)
        results, outputs = COMMANDS[args.command](args, examples, base)
    except (ValueError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    info = run_info(
        {
            **{k: v for k, v in vars(args).items() if k not in ("protocol", "report")},
            "format": fmt,
            "base_settings": base,
        }
    )
    info["selection_protocol"] = args.protocol.describe()
    results = results or {}
    info["epochs"] = {
        model: [{"best": b, "last": last} for b, last in entry["epochs"]] for model, entry in results.items()
    }
    info["per_seed"] = per_seed(results, args.protocol, tuple(args.report))
    info["train_time"] = {
        model: [{"seconds": seconds, "epochs_timed": timed} for seconds, timed in entry["train_time"]]
        for model, entry in results.items()
    }
    epochs = f"{epochs_line(results)}\n\n{training_time_line(results)}" if results else ""
    protocols = {"": None, **{f".{slug(p)}": p.describe() for p in args.report}}
    for suffix, table, markdown in outputs:
        valid = f"\n\n{valid_line(results, protocols[suffix])}" if results else ""
        write_outputs(args.out, args.command + suffix, table, f"{markdown}{valid}\n\n{epochs}", info)
        print(f"{markdown}{valid}\n")
    print(epochs)
    print(f"\nwrote {os.path.join(args.out, args.command)}.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
