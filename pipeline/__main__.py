"""Command line of the pipeline.

    python -m pipeline run-local [--input PATH --format FMT] [--root DIR] [--config FILE.yaml] [--set key=value ...]
    python -m pipeline compile [--output pipeline.yaml] [--image IMAGE]
    python -m pipeline submit --endpoint URL [--experiment NAME] [--set ...]
    python -m pipeline schedule --endpoint URL --cron "0 3 * * *" [--name NAME] [--set ...]
    python -m pipeline retrain --input NEW_LOGS [--root DIR] [--set ...]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import warnings


from pipeline.config import REPO, PipelineConfig, load_config

STATE_FILE = "state.json"


class PipelineFailed(Exception):
    """The run stopped; str() says where and why."""


def pipeline_arguments(config: PipelineConfig, local: bool = True) -> dict:
    """Runtime parameters of create_pipeline for one run."""
    paths = config.paths()
    inputs = ",".join(os.path.abspath(p.strip()) if local else p.strip() for p in config.input.split(",") if p.strip())
    return {
        "input_path": inputs, "input_format": config.format, "max_len": config.max_len, "min_events": config.min_events,
        "min_item_count": config.min_item_count, "domains": config.domains, "domain_names": config.domain_names,
        "model_settings": config.model_settings(), "warm_start": config.warm_start, "num_negatives": config.num_negatives,
        "negative_pool": config.negative_pool, "blessing_tolerance": config.blessing_tolerance,
        "max_rejected_fraction": config.max_rejected_fraction, "model_name": config.model_name,
        "serving_root": paths["serving_root"] if local else (config.serving_root or "/models"),
        "cache_dir": paths["cache_dir"] if local else "", "report_dir": paths["report_dir"] if local else "",
    }


def run_local(config: PipelineConfig) -> dict:
    """Run the whole pipeline with kfp.local (subprocesses, no Docker); returns report/metrics.json."""
    from kfp import local

    from components.readers import InputError
    from pipeline.kfp_pipeline import create_pipeline
    from pipeline.stages import input_files

    paths = config.paths()
    try:
        input_files(",".join(os.path.abspath(p) for p in config.input.split(",") if p.strip()))
    except InputError as err:
        raise PipelineFailed(str(err)) from err
    os.makedirs(paths["report_dir"], exist_ok=True)
    for name in ("metrics.json", "anomalies.txt"):
        if os.path.exists(os.path.join(paths["report_dir"], name)):
            os.remove(os.path.join(paths["report_dir"], name))
    os.environ["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    logging.getLogger("kfp").setLevel(logging.WARNING)
    # kfp.local notes that resource limits, display names and the image only apply on Kubeflow.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=paths["pipeline_root"])
    try:
        create_pipeline(**pipeline_arguments(config))
    except RuntimeError as err:
        anomalies = os.path.join(paths["report_dir"], "anomalies.txt")
        if os.path.exists(anomalies) and not open(anomalies, encoding="utf-8").read().startswith("no anomalies"):
            raise PipelineFailed(open(anomalies, encoding="utf-8").read().strip()) from err
        raise PipelineFailed(f"the pipeline failed: {err}; the failing task's log is above, its files under {paths['pipeline_root']}") from err
    with open(os.path.join(paths["report_dir"], "metrics.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    with open(os.path.join(paths["root"], STATE_FILE), "w", encoding="utf-8") as handle:
        json.dump({"inputs": [p.strip() for p in config.input.split(",") if p.strip()], "format": config.format}, handle, indent=1)
    return report


def compile_pipeline(output: str, image: str | None = None) -> str:
    """Write the KFP spec; `image` (or $SYNCREC_IMAGE) is the component image."""
    import importlib

    from kfp import compiler

    from pipeline import kfp_pipeline

    previous = os.environ.get("SYNCREC_IMAGE")
    if image:
        os.environ["SYNCREC_IMAGE"] = image
        kfp_pipeline = importlib.reload(kfp_pipeline)
    try:
        compiler.Compiler().compile(kfp_pipeline.create_pipeline, output)
    finally:
        if image:
            os.environ.pop("SYNCREC_IMAGE") if previous is None else os.environ.__setitem__("SYNCREC_IMAGE", previous)
            importlib.reload(kfp_pipeline)
    return output


def _client(endpoint: str):
    import kfp

    try:
        client = kfp.Client(host=endpoint)
        client.list_experiments(page_size=1)
        return client
    except Exception as err:  # kfp raises many kinds (connection, auth, HTTP)
        raise PipelineFailed(f"cannot reach Kubeflow Pipelines at {endpoint}: {type(err).__name__}: {err}; check --endpoint and your credentials") from err


def submit(config: PipelineConfig, endpoint: str, experiment: str) -> str:
    client = _client(endpoint)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"))
        run = client.create_run_from_pipeline_package(package, arguments=pipeline_arguments(config, local=False), experiment_name=experiment)
    return run.run_id


def normalise_cron(cron: str) -> str:
    """KFP wants 6 fields (seconds first); accept the usual 5-field form too."""
    fields = cron.split()
    if len(fields) == 5:
        fields = ["0"] + fields
    if len(fields) != 6:
        raise PipelineFailed(f"--cron {cron!r} must have 5 fields (min hour day month weekday) or 6 (with seconds first)")
    return " ".join(fields)


def schedule(config: PipelineConfig, endpoint: str, experiment: str, name: str, cron: str) -> str:
    """Create the recurring run, replacing one of the same name (so the schedule can be updated)."""
    cron = normalise_cron(cron)
    client = _client(endpoint)
    exp = client.create_experiment(experiment) if not _find_experiment(client, experiment) else _find_experiment(client, experiment)
    listing = client.list_recurring_runs(experiment_id=exp.experiment_id, page_size=200)
    for job in listing.recurring_runs or []:
        if job.display_name == name:
            client.delete_recurring_run(job.recurring_run_id)
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(os.path.join(tmp, "pipeline.yaml"))
        job = client.create_recurring_run(exp.experiment_id, name, cron_expression=cron, pipeline_package_path=package,
                                          params=dict(pipeline_arguments(config, local=False), warm_start="latest"))
    return job.recurring_run_id


def _find_experiment(client, name):
    try:
        return client.get_experiment(experiment_name=name)
    except Exception:  # not found
        return None


def retrain(config: PipelineConfig, new_input: str) -> dict:
    """Add new logs to those of the last run, warm-start from the last pushed model, push if blessed."""
    state_path = os.path.join(config.paths()["root"], STATE_FILE)
    if not os.path.exists(state_path):
        raise PipelineFailed(f"{state_path} not found: run `python -m pipeline run-local --root {config.root}` first")
    with open(state_path, encoding="utf-8") as handle:
        state = json.load(handle)
    inputs = state["inputs"] + [p for p in new_input.split(",") if p and p not in state["inputs"]]
    config.input, config.format = ",".join(inputs), state["format"]
    if not config.warm_start:
        config.warm_start = "latest"
    return run_local(config)


def format_report(report: dict) -> str:
    from model_keras.evaluation import METRICS

    lines = ["| domain | users | " + " | ".join(METRICS) + " |", "|---|---:|" + "---:|" * len(METRICS)]
    for name, m in list(report["domains"].items()) + [("all", report["all"])]:
        lines.append(f"| {name} | {m['users']} | " + " | ".join(f"{m[k]:.4f}" for k in METRICS) + " |")
    lines.append("")
    lines += [f"blessing: {reason}" for reason in report["blessing"]["reasons"]]
    lines.append(f"blessed: {report['blessed']}; pushed to: {report['pushed_to'] or 'not pushed'}")
    lines.append(f"cache: transform {'reused' if report['cache']['transform'] else 'ran'}, train {'reused' if report['cache']['train'] else 'ran'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description="The syncrec pipeline (Kubeflow Pipelines v2).")
    verbs = parser.add_subparsers(dest="verb", required=True)

    def common(sub, input_required=False):
        sub.add_argument("--input", required=input_required, default=None, help="raw logs (file, directory, glob; comma-separated for several)")
        sub.add_argument("--format", default=None, help="raw, syncrec, abxi or s3rec")
        sub.add_argument("--root", default=None, help="run folder (default runs/local)")
        sub.add_argument("--config", default=None, help="YAML file of settings")
        sub.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. --set epochs=2 --set model.num_experts=4")

    common(verbs.add_parser("run-local", help="run the whole pipeline here with kfp.local"))
    retrain_parser = verbs.add_parser("retrain", help="add new logs, warm-start, push if blessed")
    common(retrain_parser, input_required=True)
    compile_parser = verbs.add_parser("compile", help="write the KFP pipeline spec")
    compile_parser.add_argument("--output", default="pipeline.yaml")
    compile_parser.add_argument("--image", default=None, help="component image (default syncrec:latest or $SYNCREC_IMAGE)")
    for name in ("submit", "schedule"):
        sub = verbs.add_parser(name, help=f"{name} a run on Kubeflow Pipelines")
        common(sub)
        sub.add_argument("--endpoint", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
        sub.add_argument("--experiment", default="syncrec")
        if name == "schedule":
            sub.add_argument("--cron", required=True, help='e.g. "0 3 * * *" (daily at 03:00)')
            sub.add_argument("--name", default="syncrec-retrain")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "compile":
            print(f"wrote {compile_pipeline(args.output, args.image)}")
            return 0
        flags = {"input": args.input if args.verb != "retrain" else None, "format": args.format, "root": args.root}
        config = load_config(args.config, args.set, **flags)
        if args.verb == "run-local":
            report = run_local(config)
        elif args.verb == "retrain":
            report = retrain(config, args.input)
        elif args.verb == "submit":
            print(f"submitted run {submit(config, args.endpoint, args.experiment)}")
            return 0
        else:
            print(f"scheduled recurring run {schedule(config, args.endpoint, args.experiment, args.name, args.cron)} ({normalise_cron(args.cron)})")
            return 0
    except (PipelineFailed, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    print(f"report: {os.path.join(config.paths()['report_dir'], 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
