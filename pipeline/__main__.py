"""Command line of the pipeline.

python -m pipeline run-local [--input PATH --format FMT] [--root DIR] [--config FILE.yaml] [--set key=value ...]
                               [--verbose]
python -m pipeline compile [--output pipeline.yaml] [--image IMAGE] [--no-cache]
python -m pipeline submit --endpoint URL [--image IMAGE] [--namespace NS] [--token-file F] [--experiment NAME]
                          [--no-cache] [--set ...]
python -m pipeline schedule --endpoint URL --cron "0 3 * * *" [--image IMAGE] [--namespace NS] [--token-file F]
                            [--name NAME] [--max-concurrency N] [--catchup] [--no-cache] [--set ...]
python -m pipeline retrain --input NEW_LOGS [--root DIR] [--set ...]
python -m pipeline history --root DIR [--model NAME] [--serving-root DIR]
python -m pipeline settings
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import warnings

from pipeline.config import REPO, PipelineConfig, describe_settings, load_config, pipeline_arguments
from pipeline.kubeflow import (
    IMAGE_ENV,
    NAMESPACE_ENV,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Endpoint,
    PipelineFailed,
    compile_pipeline,
    normalise_cron,
    pipeline_module,
    schedule,
    submit,
)
from pipeline.progress import ENV as PROGRESS_ENV
from pipeline.progress import Follower, terminal_stream

STATE_FILE = "state.json"
LOG_FILE = "run-local.log"


@contextlib.contextmanager
def quiet_run(log_path: str, verbose: bool):
    """Send everything the run prints (kfp.local's executor output, TensorFlow's logs, the stages' own
    output) to `log_path`, and show the stages' progress lines on the terminal instead; --verbose
    shows everything and still writes the progress lines."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    progress_path = os.path.join(os.path.dirname(log_path), "progress.jsonl")
    if os.path.exists(progress_path):
        os.remove(progress_path)
    os.environ[PROGRESS_ENV] = progress_path
    terminal = terminal_stream()
    follower = Follower(progress_path, terminal, terminal=terminal.isatty() and not verbose)
    saved = (os.dup(1), os.dup(2))
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "a", encoding="utf-8") as log:
        if not verbose:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        follower.start()
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            follower.stop()
            os.environ.pop(PROGRESS_ENV, None)


def run_local(config: PipelineConfig, verbose: bool = False) -> dict:
    """Run the whole pipeline with kfp.local (subprocesses, no Docker); returns report/metrics.json."""
    if not verbose:  # Beam's notices about optional extras (e.g. "apitools not found") at import time
        logging.getLogger().setLevel(logging.ERROR)
    from kfp import local

    from components.readers import InputError
    from pipeline.stages import input_files

    paths = config.paths()
    try:
        input_files(config.input_list(absolute=True))
    except InputError as err:
        raise PipelineFailed(str(err)) from err
    if config.warm_start not in ("", "none", "latest") and not os.path.isfile(
        os.path.join(config.warm_start, "saved_model.pb")
    ):
        raise PipelineFailed(
            f"warm_start {config.warm_start} is not an exported SavedModel (no saved_model.pb there): "
            "use 'latest', 'none' or a model's saved_model/ folder"
        )
    os.makedirs(paths["report_dir"], exist_ok=True)
    for name in ("metrics.json", "anomalies.txt"):
        if os.path.exists(os.path.join(paths["report_dir"], name)):
            os.remove(os.path.join(paths["report_dir"], name))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [REPO] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    log_path = os.path.join(paths["logs"], LOG_FILE)
    with quiet_run(log_path, verbose) as terminal:
        terminal.write(f"syncrec pipeline on {config.input_path} ({config.input_format}); log: {log_path}\n")
        logging.getLogger("kfp").setLevel(logging.INFO if verbose else logging.WARNING)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=paths["pipeline_root"])
        with pipeline_module(retries=False) as module:  # a failure on one machine is the answer, not a blip
            try:
                module.create_pipeline(**pipeline_arguments(config))
            except RuntimeError as err:
                raise PipelineFailed(_failure_message(paths, log_path, err)) from err
    with open(os.path.join(paths["report_dir"], "metrics.json"), encoding="utf-8") as handle:
        report = json.load(handle)
    with open(os.path.join(paths["root"], STATE_FILE), "w", encoding="utf-8") as handle:
        json.dump(
            {"inputs": [p for p in config.input_path.split(",") if p.strip()], "format": config.input_format},
            handle,
            indent=1,
        )
    return report


def _failure_message(paths: dict, log_path: str, err: Exception) -> str:
    """The anomaly report when validation stopped the run, else the failing task's own error line."""
    anomalies = os.path.join(paths["report_dir"], "anomalies.txt")
    if os.path.exists(anomalies):
        text = open(anomalies, encoding="utf-8").read().strip()
        if not text.startswith("no anomalies"):
            return text
    cause = ""
    if os.path.exists(log_path):
        errors = [line.strip() for line in open(log_path, encoding="utf-8", errors="replace") if _is_error_line(line)]
        cause = errors[-1] if errors else ""
    return f"the pipeline failed: {cause or err}; the whole log is {log_path}"


def _is_error_line(line: str) -> bool:
    """A Python exception line of a stage (e.g. 'TrainingDiverged: training diverged in epoch 3: ...')."""
    head = line.strip().split(":", 1)[0]
    return head.endswith(("Error", "Diverged", "Found", "Exception", "Failed")) and " " not in head and ":" in line


def retrain(config: PipelineConfig, new_input: str, verbose: bool = False) -> dict:
    """Add new logs to those of the last run, warm-start from the last pushed model, push if blessed."""
    state_path = os.path.join(config.paths()["root"], STATE_FILE)
    if not os.path.exists(state_path):
        raise PipelineFailed(f"{state_path} not found: run `python -m pipeline run-local --root {config.root}` first")
    with open(state_path, encoding="utf-8") as handle:
        state = json.load(handle)
    inputs = state["inputs"] + [p for p in new_input.split(",") if p and p not in state["inputs"]]
    config.input_path, config.input_format = ",".join(inputs), state["format"]
    if not config.warm_start:
        config.warm_start = "latest"
    return run_local(config, verbose)


def format_report(report: dict) -> str:
    """The per-domain test table, the blessing reasons and where the model went."""
    from model_keras.metrics import format_metrics

    from pipeline.report_page import chance_ndcg10

    negatives = report.get("protocol", {}).get("num_negatives", PipelineConfig.num_negatives)
    lines = [format_metrics(report, "test split, per domain"), ""]
    lines.append(
        f"test NDCG@10 {report['all']['NDCG@10']:.4f}; a random ranking of the label among {negatives + 1} candidates "
        f"gives {chance_ndcg10(negatives):.4f}"
    )
    lines += [f"blessing: {reason}" for reason in report["blessing"]["reasons"]]
    training = report.get("training", {})
    lines.append(
        f"best epoch {training.get('best_epoch')} of {training.get('last_epoch')}; blessed: {report['blessed']}; "
        f"pushed to: {report['pushed_to'] or 'not pushed'}"
    )
    return "\n".join(lines)


def show_history(root: str, model: str | None, serving_root: str | None) -> int:
    """Print the history of pushes as a Markdown table and plot it to ROOT/report/history.png."""
    from pipeline import history

    config = PipelineConfig(root=root)
    model = model or config.model_name
    serving_root = serving_root or config.paths()["serving_root"]
    records = history.read(serving_root, model)
    if not records:
        print(
            f"error: no pushed version of {model!r} under {serving_root} ({history.history_path(serving_root, model)} "
            "is missing): run `python -m pipeline run-local --root ROOT` first",
            file=sys.stderr,
        )
        return 1
    print(history.markdown_table(records))
    plot = history.plot(records, os.path.join(config.paths()["report_dir"], "history.png"))
    print(f"\n{len(records)} pushed versions; plot: {plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="The syncrec pipeline (Kubeflow Pipelines v2)."
    )
    verbs = parser.add_subparsers(dest="verb", required=True)

    def common(sub, input_required=False):
        sub.add_argument(
            "--input",
            required=input_required,
            default=None,
            help="raw logs (file, directory, glob; comma-separated for several)",
        )
        sub.add_argument("--format", default=None, help="raw, syncrec, abxi or s3rec")
        sub.add_argument("--root", default=None, help="run folder (default runs/local)")
        sub.add_argument("--config", default=None, help="YAML file of settings")
        sub.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="e.g. --set epochs=2 --set model.num_experts=4",
        )

    for name, text in (
        ("run-local", "run the whole pipeline here with kfp.local"),
        ("retrain", "add new logs, warm-start, push if blessed"),
    ):
        sub = verbs.add_parser(name, help=text)
        common(sub, input_required=name == "retrain")
        sub.add_argument("--verbose", action="store_true", help="show kfp.local's and TensorFlow's output too")
    def image(sub):
        sub.add_argument(
            "--image", default=None, help=f"component image, e.g. REG/syncrec:TAG (default ${IMAGE_ENV} or syncrec:latest)"
        )

    compile_parser = verbs.add_parser("compile", help="write the KFP pipeline spec")
    compile_parser.add_argument("--output", default="pipeline.yaml")
    image(compile_parser)
    compile_parser.add_argument("--no-cache", action="store_true", help="turn Kubeflow's task caching off")
    for name in ("submit", "schedule"):
        sub = verbs.add_parser(name, help=f"{name} a run on Kubeflow Pipelines")
        common(sub)
        image(sub)
        sub.add_argument("--endpoint", required=True, help="Kubeflow Pipelines API, e.g. http://localhost:8080")
        sub.add_argument(
            "--namespace", default=None, help=f"multi-user Kubeflow: your profile's namespace (default ${NAMESPACE_ENV})"
        )
        sub.add_argument(
            "--token-file",
            default=None,
            help=f"a file holding the bearer token (default ${TOKEN_FILE_ENV}; or the token itself in ${TOKEN_ENV})",
        )
        sub.add_argument("--experiment", default="syncrec")
        sub.add_argument("--no-cache", action="store_true", help="turn Kubeflow's task caching off for this run")
        if name == "schedule":
            sub.add_argument("--cron", required=True, help='e.g. "0 3 * * *" (daily at 03:00)')
            sub.add_argument("--name", default="syncrec-retrain")
            sub.add_argument("--max-concurrency", type=int, default=1, help="runs of the schedule at once (1-10)")
            sub.add_argument(
                "--catchup", action="store_true", help="make up each missed run (default: one run after a pause)"
            )
    history_parser = verbs.add_parser("history", help="one row per pushed version, and a plot over versions")
    history_parser.add_argument("--root", required=True, help="the run folder (its serving/ holds the history)")
    history_parser.add_argument("--model", default=None, help="the model name (default: the model_name setting)")
    history_parser.add_argument("--serving-root", default=None, help="the serving root, if not ROOT/serving")
    verbs.add_parser("settings", help="list every pipeline setting with its default")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "settings":
            print(describe_settings())
            return 0
        if args.verb == "history":
            return show_history(args.root, args.model, args.serving_root)
        if args.verb == "compile":
            print(f"wrote {compile_pipeline(args.output, args.image, enable_caching=not args.no_cache)}")
            return 0
        flags = {"input": args.input if args.verb != "retrain" else None, "format": args.format, "root": args.root}
        config = load_config(args.config, args.set, **flags)
        if args.verb == "run-local":
            report = run_local(config, args.verbose)
        elif args.verb == "retrain":
            report = retrain(config, args.input, args.verbose)
        elif args.verb == "submit":
            endpoint = Endpoint.from_flags(args.endpoint, args.namespace, args.token_file)
            run = submit(config, endpoint, args.experiment, not args.no_cache, args.image)
            print(f"submitted run {run}")
            return 0
        else:
            endpoint = Endpoint.from_flags(args.endpoint, args.namespace, args.token_file)
            job = schedule(
                config,
                endpoint,
                args.experiment,
                args.name,
                args.cron,
                not args.no_cache,
                args.image,
                max_concurrency=args.max_concurrency,
                catchup=args.catchup,
            )
            print(f"scheduled recurring run {job} ({normalise_cron(args.cron)})")
            return 0
    except (PipelineFailed, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(format_report(report))
    report_dir = config.paths()["report_dir"]
    print(f"report: {os.path.join(report_dir, 'index.html')} (page), {os.path.join(report_dir, 'metrics.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
