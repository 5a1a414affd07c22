"""Transform component: raw interaction logs -> validated TFRecord SequenceExamples.

    python -m components.transform --input PATH_OR_GLOB --format {raw,syncrec,abxi,s3rec} --output DIR

Writes DIR/{train,valid,test}/part-*.tfrecord.gz, DIR/vocabulary.json, DIR/stats.json and
DIR/quarantine/rejected-*.jsonl, then prints the stats. Extra flags are Beam pipeline options
(e.g. `--direct_num_workers 2 --direct_running_mode multi_processing`, or a Dataflow runner).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

from components import readers
from components.raw_log import TOO_MANY_DOMAINS
from schemas import sequence_settings
from schemas.features import COMPLETION_MARKER

DEFAULT_INPUT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "amazon-sample", "amazon_seq.txt"
)
OUTPUT_ENTRIES = (
    "train",
    "valid",
    "test",
    "quarantine",
    "vocabulary.json",
    COMPLETION_MARKER,
)  # what the transform writes


@dataclass
class TransformConfig:
    """Everything the transform needs; flows CLI/pipeline -> here -> Beam transforms."""

    input: str = DEFAULT_INPUT
    format: str = "syncrec"
    output: str = "out/examples"
    max_len: int = sequence_settings.default("max_len")
    min_events: int = sequence_settings.default("min_events")
    min_item_count: int = sequence_settings.default("min_item_count")
    domains: list[str] | None = None
    runner: str = "DirectRunner"
    item_map: str | None = None
    user_map: str | None = None
    domain_names: list[str] = field(default_factory=list)
    single_domain: str | None = None
    chunk_bytes: int = 64 << 20  # large text inputs are read in ranges of this size, in parallel (split_reading)
    duplicates: str = (
        "keep"  # exact duplicate events: "keep" (counted in stats.json) or "drop" (quarantined as duplicate_event)
    )
    max_domains: int = 100

    def validate(self) -> None:
        """Raise InputError naming the flag for any setting out of range."""
        if self.format not in readers.FORMATS:
            raise readers.InputError(f"--format {self.format!r} is not one of {', '.join(readers.FORMATS)}")
        bad = sequence_settings.problems(
            {"max_len": self.max_len, "min_events": self.min_events, "min_item_count": self.min_item_count}, "--"
        )
        if bad:
            raise readers.InputError("; ".join(b.replace("_", "-") for b in bad))
        if self.duplicates not in ("drop", "keep"):
            raise readers.InputError(f"--duplicates must be drop or keep (got {self.duplicates!r})")
        if self.chunk_bytes < 1024:
            raise readers.InputError(f"--chunk-mb must be > 0 (got {self.chunk_bytes} bytes)")
        if not 1 <= self.max_domains <= 1000:
            raise readers.InputError(f"--max-domains must be in [1, 1000] (got {self.max_domains})")

    def reader_options(self) -> readers.ReaderOptions:
        """What the readers need from this config."""
        return readers.ReaderOptions(
            format=self.format,
            item_map=self.item_map,
            user_map=self.user_map,
            domain_names=tuple(self.domain_names),
            single_domain=self.single_domain,
        )


def input_files(config: TransformConfig) -> list[str]:
    """Data files of the input (any Beam filesystem); for a directory, skip docs and ABXI's map files.
    Each file is opened once here, so an unreadable one fails before the pipeline starts."""
    files = readers.expand_input(config.input)
    if (readers.is_local(config.input) and os.path.isdir(config.input)) or config.input.endswith("/"):
        files = [f for f in files if readers.is_data_file(f)]
    options = config.reader_options()
    for path in files:
        readers.check_readable(path, options)
    return files


def _beam_options(config: TransformConfig, beam_args: list[str]):
    from apache_beam.options.pipeline_options import PipelineOptions

    args = list(beam_args)
    runner = (
        "FnApiRunner"
        if config.runner in ("DirectRunner", "FnApiRunner") and not any(a.startswith("--direct_") for a in args)
        else config.runner
    )
    # The plain DirectRunner first tries to fetch the Prism runner binary, which fails offline;
    # the FnApiRunner is the in-process engine behind the DirectRunner, so use it directly.
    return PipelineOptions([f"--runner={runner}", *args])


def input_fingerprint(files: list[str]) -> str:
    """sha256 over the names and bytes of the local input files, in order (what the output depends on);
    remote files contribute their path, size and modification time (reading them here would be slow)."""
    from apache_beam.io.filesystems import FileSystems

    digest = hashlib.sha256()
    for path in files:
        digest.update(readers.basename(path).encode())
        if readers.is_local(path):
            readers.hash_local_file(path, digest)
        else:
            meta = FileSystems.match([path])[0].metadata_list[0]
            digest.update(f"{meta.path}:{meta.size_in_bytes}:{meta.last_updated_in_seconds}".encode())
    return digest.hexdigest()


def output_is_current(config: TransformConfig) -> bool:
    """True when config.output holds a finished transform of the same inputs and settings."""
    stats_path = os.path.join(config.output, COMPLETION_MARKER)
    if not os.path.isfile(stats_path):
        return False
    try:
        with open(stats_path, encoding="utf-8") as handle:
            stats = json.load(handle)
        files = input_files(config)
    except (OSError, ValueError, readers.InputError):
        return False
    expected = {**asdict(config), "files": files}
    return stats.get("config") == expected and stats.get("input_sha256") == input_fingerprint(files)


def _check_output_folder(output: str) -> None:
    """Refuse to replace entries in a folder that holds them but is not a transform output."""
    if os.path.isfile(os.path.join(output, COMPLETION_MARKER)) or not os.path.isdir(output):
        return
    foreign = [name for name in OUTPUT_ENTRIES if os.path.exists(os.path.join(output, name))]
    if foreign:
        raise readers.InputError(
            f"--output {output} already holds {foreign} that no finished transform wrote; "
            "choose an empty or new folder (the transform never deletes what it did not write)"
        )


def _swap_in(staging: str, output: str) -> None:
    """Replace the transform's own entries in `output` by those in `staging`, marker last.

    The old marker goes first, so a reader never takes a half-replaced folder for a finished one."""
    os.makedirs(output, exist_ok=True)
    trash = tempfile.mkdtemp(prefix=".transform-old-", dir=output)
    marker = os.path.join(output, COMPLETION_MARKER)
    if os.path.exists(marker):
        os.replace(marker, os.path.join(trash, COMPLETION_MARKER))
    for name in OUTPUT_ENTRIES:
        if name != COMPLETION_MARKER and os.path.exists(os.path.join(output, name)):
            os.replace(os.path.join(output, name), os.path.join(trash, name))
    for name in OUTPUT_ENTRIES:
        if name != COMPLETION_MARKER and os.path.exists(os.path.join(staging, name)):
            os.replace(os.path.join(staging, name), os.path.join(output, name))
    os.replace(os.path.join(staging, COMPLETION_MARKER), marker)
    shutil.rmtree(trash, ignore_errors=True)


def run_transform(config: TransformConfig, beam_args: list[str] | None = None) -> dict:
    """Run the Beam pipeline and return the stats document (also written to stats.json, last).

    A local output is written into a staging folder beside it and swapped in only when the run
    finished and its row accounting balanced: a failed run leaves an earlier output as it was. An
    object-store output (gs://, s3://: no atomic folder swap) must be a new folder; it is written in
    place, and until stats.json is written last no consumer takes it for a finished output."""
    config.validate()
    files = input_files(config)
    if not readers.is_local(config.output):
        return _run_remote(config, files, beam_args or [])
    output = os.path.abspath(config.output)
    _check_output_folder(output)
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    for stale in glob.glob(os.path.join(parent, f".{os.path.basename(output)}.staging-*")):
        shutil.rmtree(stale, ignore_errors=True)  # left by a run that was killed
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.staging-", dir=parent)
    try:
        stats = _run_and_check(config, files, staging, beam_args or [])
        with open(os.path.join(staging, COMPLETION_MARKER), "w", encoding="utf-8") as handle:
            json.dump(stats, handle, indent=2)
        _swap_in(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return stats


def _run_remote(config: TransformConfig, files: list[str], beam_args: list[str]) -> dict:
    """run_transform into a new folder on an object store (Dataflow writes gs:// outputs)."""
    from apache_beam.io.filesystems import FileSystems

    if FileSystems.match([FileSystems.join(config.output, "*")])[0].metadata_list:  # stats.json included
        raise readers.InputError(
            f"--output {config.output} is not empty: object stores cannot replace a folder atomically, "
            "so write each run to a new folder (e.g. .../examples/2026-11-29)"
        )
    stats = _run_and_check(config, files, config.output, beam_args)
    with FileSystems.create(FileSystems.join(config.output, COMPLETION_MARKER)) as handle:
        handle.write(json.dumps(stats, indent=2).encode("utf-8"))
    return stats


def _run_and_check(config: TransformConfig, files: list[str], output: str, beam_args: list[str]) -> dict:
    """The pipeline into `output`, with a user-caused failure as one clear message and the accounting checked."""
    started = time.time()
    try:
        stats = _run_pipeline(config, files, output, beam_args)
    except Exception as err:  # Beam wraps a DoFn's error; a user-caused one becomes one clear message
        message = str(err)
        if TOO_MANY_DOMAINS in message:
            detail = message.split(TOO_MANY_DOMAINS, 1)[1].split("\n")[0].split(" [while")[0]
            raise readers.InputError(TOO_MANY_DOMAINS + detail) from None
        raise
    stats["seconds"] = round(time.time() - started, 3)
    stats["input_sha256"] = input_fingerprint(files)
    if stats["rows_read"] == 0:
        raise readers.InputError(
            f"{files[0] if len(files) == 1 else f'{len(files)} input files'}: no data rows (empty, or only a header): "
            "nothing to train on; pass the logs themselves"
        )
    if not stats["balanced"]:
        raise RuntimeError(
            f"row accounting is off: {stats['rows_read']} read != {stats['rows_accepted']} accepted + "
            f"{stats['rows_rejected']} rejected"
        )
    return stats


def _run_pipeline(config: TransformConfig, files: list[str], output: str, beam_args: list[str]) -> dict:
    """The Beam pipeline itself, writing into `output`; returns the stats (not yet written)."""
    import apache_beam as beam
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    from components.beam_transforms import TransformLogs, assemble_stats

    work = FileSystems.join(output, "_work")
    with beam.Pipeline(options=_beam_options(config, beam_args)) as pipeline:
        result = pipeline | "TransformLogs" >> TransformLogs(
            files,
            config.reader_options(),
            config.domains,
            config.min_events,
            config.min_item_count,
            config.max_len,
            keep_duplicates=config.duplicates == "keep",
            max_domains=config.max_domains,
            chunk_bytes=config.chunk_bytes,
        )
        for split, examples in result["splits"].items():
            _ = examples | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
                os.path.join(output, split, "part"),
                file_name_suffix=".tfrecord.gz",
                compression_type=CompressionTypes.GZIP,
            )
        _ = result["rejected"] | "WriteQuarantine" >> beam.io.WriteToText(
            os.path.join(output, "quarantine", "rejected"), file_name_suffix=".jsonl"
        )
        _ = (
            result["vocabulary"]
            | "VocabularyJson" >> beam.Map(lambda vocab: json.dumps(vocab.to_json()))
            | "WriteVocabulary" >> beam.io.WriteToText(os.path.join(output, "vocabulary.json"), shard_name_template="")
        )
        run_config = {**asdict(config), "files": files}
        _ = (
            pipeline
            | "StatsSeed" >> beam.Create([None])
            | "AssembleStats"
            >> beam.Map(
                lambda _, read, reasons, users, vocab, dups: json.dumps(
                    assemble_stats(read, reasons, users, vocab, run_config, dups)
                ),
                beam.pvalue.AsSingleton(result["rows_read"]),
                beam.pvalue.AsList(result["reasons"]),
                beam.pvalue.AsSingleton(result["user_stats"]),
                beam.pvalue.AsSingleton(result["vocabulary"]),
                beam.pvalue.AsSingleton(result["duplicates"]),
            )
            | "WriteStats" >> beam.io.WriteToText(os.path.join(work, "stats"), shard_name_template="")
        )
    with FileSystems.open(FileSystems.join(work, "stats")) as handle:
        stats = json.loads(handle.read().decode("utf-8"))
    FileSystems.delete([m.path for m in FileSystems.match([FileSystems.join(work, "*")])[0].metadata_list])
    return stats


def format_stats(stats: dict) -> str:
    """A short human-readable summary of stats.json."""
    lines = [
        f"rows read {stats['rows_read']:,} = accepted {stats['rows_accepted']:,} + rejected {stats['rows_rejected']:,}",
        f"users {stats['users']:,}  items {stats['items']:,}  interactions {stats['interactions']:,}  "
        f"({stats.get('seconds', 0):.1f} s)",
    ]
    for reason, count in stats["rejected_by_reason"].items():
        lines.append(f"  rejected {reason}: {count:,}")
    lines.append(f"{'domain':<28}{'items':>9}{'interactions':>14}{'users':>8}{'test users':>12}")
    for name, d in stats["domains"].items():
        lines.append(f"{name:<28}{d['items']:>9,}{d['interactions']:>14,}{d['users']:>8,}{d['test_users']:>12,}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line (Beam flags pass through)."""
    parser = argparse.ArgumentParser(prog="python -m components.transform", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input", default=DEFAULT_INPUT, help="file, directory or glob (default: the embedded Amazon sample)"
    )
    parser.add_argument(
        "--format",
        default=None,
        choices=readers.FORMATS,
        help="input format (default: syncrec for the embedded sample, else raw)",
    )
    parser.add_argument("--output", required=True, help="output directory")
    for name in sequence_settings.SEQUENCE_SETTINGS:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=sequence_settings.default(name), help=sequence_settings.doc(name))
    parser.add_argument("--domains", default=None, help="comma-separated allow-list of domains; others are rejected")
    parser.add_argument("--runner", default=TransformConfig.runner, help="Beam runner (DirectRunner runs in-process)")
    parser.add_argument(
        "--item-map", default=None, help="abxi: item map JSON (default: map_item_50.txt beside the input)"
    )
    parser.add_argument(
        "--user-map", default=None, help="abxi: user map JSON (default: map_user_50.txt beside the input)"
    )
    parser.add_argument("--domain-names", default=None, help="abxi: names of domain 0,1,... (comma-separated)")
    parser.add_argument("--single-domain", default=None, help="s3rec: the domain name (default: the file's stem)")
    parser.add_argument(
        "--duplicates",
        choices=("keep", "drop"),
        default=TransformConfig.duplicates,
        help="exact duplicate events (same user, item, domain, time): keep and count them (default) or quarantine them",
    )
    parser.add_argument(
        "--chunk-mb",
        type=int,
        default=TransformConfig.chunk_bytes >> 20,
        help="large text inputs are read in ranges of this many MiB, in parallel",
    )
    parser.add_argument("--verbose", action="store_true", help="show Beam's own log")
    parser.add_argument(
        "--max-domains",
        type=int,
        default=TransformConfig.max_domains,
        help="refuse inputs with more domains (the model's cost grows with them)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> TransformConfig:
    """TransformConfig from the parsed flags (syncrec for the embedded sample, raw otherwise)."""
    fmt = args.format or ("syncrec" if args.input == DEFAULT_INPUT else "raw")
    return TransformConfig(
        input=args.input,
        format=fmt,
        output=args.output,
        max_len=args.max_len,
        min_events=args.min_events,
        min_item_count=args.min_item_count,
        domains=[d.strip() for d in args.domains.split(",") if d.strip()] if args.domains else None,
        runner=args.runner,
        item_map=args.item_map,
        user_map=args.user_map,
        domain_names=[d.strip() for d in args.domain_names.split(",")] if args.domain_names else [],
        single_domain=args.single_domain,
        duplicates=args.duplicates,
        chunk_bytes=args.chunk_mb << 20,
        max_domains=args.max_domains,
    )


def main(argv: list[str] | None = None) -> int:
    args, beam_args = build_parser().parse_known_args(argv)
    if not args.verbose:  # Beam logs a worker's error with its traceback before the error reaches us
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)
    try:
        stats = run_transform(config_from_args(args), beam_args)
    except readers.InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_stats(stats))
    print(f"wrote {os.path.abspath(args.output)} (stats.json, vocabulary.json, train/valid/test, quarantine/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
