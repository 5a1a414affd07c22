"""Reports of the paper's tables on any dataset the transform reads.

    python -m experiments {compare,negative-transfer,ablation,sweep} [--input PATH --format FMT]
        [--models syncrec,sasrec,...] [--seeds N] [--set key=value ...] [--grid key=v1,v2,...] --out DIR

compare            Table 2: per-domain HR@5/10, NDCG@5/10, MRR of SyNCRec and baselines (+ lambda/phi plot)
negative-transfer  Table 4: per-domain improvement (%) of each CDSR model over the SDSR model (SASRec on X^d)
ablation           Table 5: full SyNCRec, w/o LC-NTG, w/o SC-MIM, w/o ACMoE (MRR per domain)
sweep              Fig. 3: one setting over values (default embed_dim 8..128), NDCG@10 per domain
Each writes DIR/<name>.md, DIR/<name>.json (model -> domain -> metric -> {mean, std}), DIR/<name>.png
and DIR/<name>.run.json (arguments, seeds, versions).
"""
from __future__ import annotations

import argparse
import json
import os
import sys


from components.readers import InputError
from components.transform import DEFAULT_INPUT
from experiments import plots
from experiments.runner import VARIANTS, Variant, aggregate, markdown_table, prepare_examples, run_info, run_variants, write_outputs
from model_keras.train import parse_settings

DEFAULT_MODELS = {"compare": "syncrec,sasrec,gru4rec,bprmf,mmoe", "negative-transfer": "syncrec,sasrec,mmoe",
                  "ablation": "syncrec,w/o LC-NTG,w/o SC-MIM,w/o ACMoE", "sweep": "syncrec"}
BASE = {"epochs": 10, "embed_dim": 32, "num_blocks": 1, "batch_size": 128}


def _variants(names: str) -> list[Variant]:
    unknown = [n for n in names.split(",") if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {sorted(VARIANTS)}")
    return [VARIANTS[n] for n in names.split(",")]


def compare(args, examples, base):
    table = aggregate(results := run_variants(examples, args.out, _variants(args.models), args.seeds, base))
    markdown = markdown_table(table, title="Overall comparison (test, mean ± std over seeds)")
    plots.grouped_bars(table, "NDCG@10", os.path.join(args.out, "compare.png"), "NDCG@10 per domain")
    if "syncrec" in results and results["syncrec"]["histories"][0]:
        history = results["syncrec"]["histories"][0]
        epochs = list(range(1, len(next(iter(history.values()))) + 1))
        plots.lines(epochs, {k: v for k, v in history.items() if k.startswith("lambda/")}, os.path.join(args.out, "lambda.png"),
                    "relative NTG lambda per domain (epoch means)", "epoch", "lambda")
        plots.lines(epochs, {k: v for k, v in history.items() if k.startswith("phi/")}, os.path.join(args.out, "phi.png"),
                    "negative transfer gap phi per domain (epoch means)", "epoch", "phi")
    return table, markdown


def negative_transfer(args, examples, base):
    variants = _variants(args.models)
    table = aggregate(run_variants(examples, args.out, variants + [VARIANTS["sdsr"]], args.seeds, base))
    reference = table.pop("sdsr")
    improvement = {}
    for model, by_domain in table.items():
        improvement[model] = {}
        for domain, metrics in by_domain.items():
            improvement[model][domain] = {}
            for metric in ("HR@5", "NDCG@5", "MRR"):
                ref = reference[domain][metric]["mean"]
                value = 100.0 * (metrics[metric]["mean"] - ref) / ref if ref else 0.0
                improvement[model][domain][metric] = {"mean": value, "std": 0.0}
            improvement[model][domain]["users"] = metrics["users"]
    lines = ["### Improvement (%) of each CDSR model over the SDSR model (SASRec trained on X^d)", ""]
    domains = list(reference)
    lines += ["| model | metric | " + " | ".join(domains) + " |", "|---|---|" + "---:|" * len(domains)]
    for model, by_domain in improvement.items():
        for metric in ("HR@5", "NDCG@5", "MRR"):
            lines.append(f"| {model} | {metric} | " + " | ".join(f"{by_domain[d][metric]['mean']:+.1f}" for d in domains) + " |")
    negatives = {m: [d for d in domains if d != "all" and by[d]["MRR"]["mean"] < 0] for m, by in improvement.items()}
    lines += ["", "domains with negative transfer (MRR below SDSR): " + "; ".join(f"{m}: {v or 'none'}" for m, v in negatives.items())]
    plots.grouped_bars(improvement, "MRR", os.path.join(args.out, "negative-transfer.png"), "MRR improvement over SDSR (%)")
    return {"improvement": improvement, "sdsr": reference, "cdsr": table}, "\n".join(lines)


def ablation(args, examples, base):
    table = aggregate(run_variants(examples, args.out, _variants(args.models), args.seeds, base))
    plots.grouped_bars(table, "MRR", os.path.join(args.out, "ablation.png"), "MRR per domain: SyNCRec and its variants")
    return table, markdown_table(table, metrics=("MRR",), title="Ablation (test MRR, mean ± std over seeds)")


def sweep(args, examples, base):
    key, _, values = (args.grid or "embed_dim=8,16,32,64,128").partition("=")
    parsed = [json.loads(v) for v in values.split(",")]
    table = {}
    note = ""
    for value in parsed:
        settings = {key: value}
        if key == "num_experts" and "num_cross_experts" not in base:
            # j must stay <= K: keep the default's share of cross-domain experts (3 of 4).
            settings["num_cross_experts"] = max(1, round(0.75 * value))
            note = " (j = round(0.75 K) cross-domain experts)"
        variant = Variant(f"{key}={value}", settings)
        table.update(aggregate(run_variants(examples, args.out, [variant], args.seeds, base)))
    domains = list(next(iter(table.values())))
    plots.lines(parsed, {d: [table[f"{key}={v}"][d]["NDCG@10"]["mean"] for v in parsed] for d in domains},
                os.path.join(args.out, "sweep.png"), f"NDCG@10 against {key}", key, "NDCG@10")
    return table, markdown_table(table, metrics=("NDCG@10", "MRR"), title=f"Sweep over {key}{note}")


COMMANDS = {"compare": compare, "negative-transfer": negative_transfer, "ablation": ablation, "sweep": sweep}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--input", default=DEFAULT_INPUT)
    parser.add_argument("--format", default=None)
    parser.add_argument("--domain-names", default="", help="abxi: names of domain 0, 1, ...")
    parser.add_argument("--models", default=None, help=f"comma-separated, from {sorted(VARIANTS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model setting for every variant")
    parser.add_argument("--grid", default=None, help="sweep: key=v1,v2,... (default embed_dim=8,16,32,64,128)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    args.models = args.models or DEFAULT_MODELS[args.command]
    fmt = args.format or ("syncrec" if args.input == DEFAULT_INPUT else "raw")
    try:
        base = {**BASE, **parse_settings(args.set)}
        os.makedirs(args.out, exist_ok=True)
        examples = prepare_examples(args.input, fmt, args.out, args.max_len, args.domain_names)
        table, markdown = COMMANDS[args.command](args, examples, base)
    except (ValueError, InputError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = args.command
    write_outputs(args.out, name, table, markdown, run_info({**vars(args), "format": fmt, "base_settings": base}))
    print(markdown)
    print(f"\nwrote {os.path.join(args.out, name)}.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
