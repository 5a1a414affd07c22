"""Readers that turn input files into raw-log records, one per interaction.

Formats:
  raw      canonical log: CSV/TSV with a header naming user_id, item_id, domain, timestamp
           (any order, delimiter detected), JSON Lines (.jsonl/.ndjson/.json) or Parquet.
  syncrec  the official SyNCRec sample: TSV, one user per line, comma-separated lists.
  abxi     ABXI sequences `user item|ts ...` plus `map_item_50.txt` (item -> [idx, domain]).
  s3rec    S3-Rec `user item item ...`, single domain, no timestamps (file order is kept).

Readers never validate ids or timestamps (that is `raw_log.RowValidator`'s job); they only
report rows they cannot even split into fields, with a reason. Every record carries
(file index, line number, position in line) so that ties in time keep input order.
"""
from __future__ import annotations

import csv
import glob
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

FORMATS = ("raw", "syncrec", "abxi", "s3rec")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
_RAW_TEXT_MAX = 500


class InputError(Exception):
    """The input cannot be read at all (no file, unreadable header, missing map...)."""


class RawRecord(NamedTuple):
    """One row as read: its position, its fields (or None) and a reader-level reject reason."""

    file_index: int
    line: int
    sub: int
    row: dict | None
    reason: str | None
    raw: str


@dataclass(frozen=True)
class ReaderOptions:
    """How to read one input. `item_map`/`user_map` default to files beside the input (abxi)."""

    format: str = "raw"
    item_map: str | None = None
    user_map: str | None = None
    domain_names: tuple[str, ...] = ()  # abxi: names for domain index 0, 1, ...
    single_domain: str | None = None  # s3rec: domain name (default: file stem)
    extra: dict = field(default_factory=dict)


def expand_input(pattern: str) -> list[str]:
    """Files matching a path, directory or glob, sorted; InputError when none match."""
    if os.path.isdir(pattern):
        files = sorted(p for p in glob.glob(os.path.join(pattern, "*")) if os.path.isfile(p))
    else:
        files = sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    if not files:
        raise InputError(f"input {pattern!r} matches no file: pass an existing file, directory or glob")
    return files


def is_data_file(path: str) -> bool:
    """False for files that sit beside data but are not data: docs and ABXI's map_*.txt."""
    return not path.endswith(".md") and not os.path.basename(path).startswith("map_")


def _raw_text(data: bytes | str) -> str:
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return text[:_RAW_TEXT_MAX]


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip(b"\r\n")


def _decode(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text_lines(path: str, index: int, skip_header: bool = False) -> Iterator[tuple[int, str | RawRecord]]:
    """(line number, text) of each line; a rejected RawRecord instead for non-UTF-8 or blank lines."""
    lines = _lines(path)
    if skip_header:
        next(lines, None)
    for number, line in lines:
        text = _decode(line)
        if text is None:
            yield number, RawRecord(index, number, 0, None, "non_utf8", _raw_text(line))
        elif not text.strip():
            yield number, RawRecord(index, number, 0, None, "empty_row", text)
        else:
            yield number, text


# ---------------------------------------------------------------- raw: CSV / TSV
def read_header(path: str) -> tuple[str, list[str]]:
    """Delimiter and lower-cased column names of a delimited raw log; InputError if unusable."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline().rstrip(b"\r\n")
    except OSError as err:
        raise InputError(f"cannot open {path}: {err.strerror}") from err
    text = _decode(first)
    if text is None:
        raise InputError(f"{path}: header is not UTF-8; re-encode the file as UTF-8")
    delimiter = "\t" if "\t" in text else ","
    columns = [c.strip().lower() for c in next(csv.reader([text], delimiter=delimiter))]
    missing = [c for c in ("user_id", "item_id", "domain", "timestamp") if c not in columns]
    if missing:
        raise InputError(
            f"{path}: header {columns} lacks {missing}; the first row must name "
            "user_id, item_id, domain, timestamp (any order, comma- or tab-separated)"
        )
    return delimiter, columns


def _read_delimited(path: str, index: int) -> Iterator[RawRecord]:
    delimiter, columns = read_header(path)
    width = len(columns)
    positions = {name: columns.index(name) for name in ("user_id", "item_id", "domain", "timestamp")}
    for number, text in _text_lines(path, index, skip_header=True):
        if isinstance(text, RawRecord):
            yield text
            continue
        values = next(csv.reader([text], delimiter=delimiter)) if '"' in text else text.split(delimiter)
        if len(values) != width:
            yield RawRecord(index, number, 0, None, "wrong_field_count", _raw_text(text))
            continue
        row = {name: values[pos] for name, pos in positions.items()}
        yield RawRecord(index, number, 0, row, None, _raw_text(text))


def _read_json_lines(path: str, index: int) -> Iterator[RawRecord]:
    for number, text in _text_lines(path, index):
        if isinstance(text, RawRecord):
            yield text
            continue
        try:
            value = json.loads(text)
        except ValueError:
            yield RawRecord(index, number, 0, None, "malformed_json", _raw_text(text))
            continue
        if not isinstance(value, dict):
            yield RawRecord(index, number, 0, None, "not_an_object", _raw_text(text))
            continue
        yield RawRecord(index, number, 0, value, None, _raw_text(text))


def _read_parquet(path: str, index: int) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a bad file
        raise InputError(f"cannot read Parquet file {path}: {err}") from err
    names = set(parquet.schema_arrow.names)
    missing = [c for c in ("user_id", "item_id", "domain", "timestamp") if c not in names]
    if missing:
        raise InputError(f"{path}: Parquet columns {sorted(names)} lack {missing}")
    number = 0
    for batch in parquet.iter_batches(columns=["user_id", "item_id", "domain", "timestamp"]):
        for row in batch.to_pylist():
            number += 1
            yield RawRecord(index, number, 0, row, None, _raw_text(json.dumps(row, default=str)))


# ---------------------------------------------------------------- dataset formats
def _read_syncrec(path: str, index: int) -> Iterator[RawRecord]:
    with open(path, "rb") as handle:
        header = handle.readline().rstrip(b"\r\n")
    columns = [c.strip() for c in (_decode(header) or "").split("\t")]
    try:
        pos = {k: columns.index(k) for k in ("user_id", "item", "type", "unix_time")}
    except ValueError as err:
        raise InputError(f"{path}: SyNCRec header {columns} lacks user_id/item/type/unix_time") from err
    for number, text in _text_lines(path, index, skip_header=True):
        if isinstance(text, RawRecord):
            yield text
            continue
        values = text.split("\t")
        if len(values) != len(columns):
            yield RawRecord(index, number, 0, None, "wrong_field_count", _raw_text(text))
            continue
        items, types, times = (values[pos[k]].split(",") for k in ("item", "type", "unix_time"))
        if not (len(items) == len(types) == len(times)):
            yield RawRecord(index, number, 0, None, "list_length_mismatch", _raw_text(text))
            continue
        user = values[pos["user_id"]]
        for sub, (item, domain, ts) in enumerate(zip(items, types, times)):
            row = {"user_id": user, "item_id": item, "domain": domain, "timestamp": ts}
            yield RawRecord(index, number, sub, row, None, f"{user}\t{item}\t{domain}\t{ts}")


def _load_json_map(path: str, what: str) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read the ABXI {what} map {path}: {err}; pass it with --{what}-map") from err


def abxi_maps(path: str, options: ReaderOptions) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """ABXI item index -> (ASIN, domain name) and user index -> reviewer id (if a map exists)."""
    folder = os.path.dirname(path)
    item_map = _load_json_map(options.item_map or os.path.join(folder, "map_item_50.txt"), "item")
    names = options.domain_names
    items = {}
    for asin, (idx, domain) in item_map.items():
        domain = int(domain)
        items[str(idx)] = (asin, names[domain] if domain < len(names) else f"domain_{domain}")
    user_path = options.user_map or os.path.join(folder, "map_user_50.txt")
    users = {str(v): k for k, v in _load_json_map(user_path, "user").items()} if os.path.exists(user_path) else {}
    return items, users


def _read_abxi(path: str, index: int, options: ReaderOptions) -> Iterator[RawRecord]:
    items, users = abxi_maps(path, options)
    for number, text in _text_lines(path, index):
        if isinstance(text, RawRecord):
            yield text
            continue
        tokens = text.split()
        user = users.get(tokens[0], tokens[0])
        for sub, token in enumerate(tokens[1:]):
            if token.count("|") != 1:
                yield RawRecord(index, number, sub, None, "malformed_token", token)
                continue
            idx, ts = token.split("|")
            if idx not in items:
                yield RawRecord(index, number, sub, None, "unknown_item", token)
                continue
            asin, domain = items[idx]
            yield RawRecord(index, number, sub, {"user_id": user, "item_id": asin, "domain": domain, "timestamp": ts}, None, token)


def _read_s3rec(path: str, index: int, options: ReaderOptions) -> Iterator[RawRecord]:
    domain = options.single_domain or Path(path).stem
    for number, text in _text_lines(path, index):
        if isinstance(text, RawRecord):
            yield text
            continue
        tokens = text.split()
        # No timestamps: the position in the user's line is the time, so file order is kept.
        for sub, item in enumerate(tokens[1:]):
            yield RawRecord(index, number, sub, {"user_id": tokens[0], "item_id": item, "domain": domain, "timestamp": sub}, None, item)


def check_readable(path: str, options: ReaderOptions) -> None:
    """Fail fast, before any pipeline starts, on a file that cannot be read at all."""
    if not os.access(path, os.R_OK):
        raise InputError(f"cannot read {path}: permission denied or missing")
    if options.format == "raw":
        if path.endswith(PARQUET_SUFFIXES):
            next(_read_parquet(path, 0), None)
        elif not path.endswith(JSON_SUFFIXES):
            read_header(path)
    elif options.format == "syncrec":
        next(_read_syncrec(path, 0), None)
    elif options.format == "abxi":
        abxi_maps(path, options)
    elif options.format != "s3rec":
        raise InputError(f"unknown --format {options.format!r}; choose one of {', '.join(FORMATS)}")


def read_records(path: str, index: int, options: ReaderOptions) -> Iterator[RawRecord]:
    """All records of one file in file order."""
    if options.format == "raw":
        if path.endswith(PARQUET_SUFFIXES):
            return _read_parquet(path, index)
        if path.endswith(JSON_SUFFIXES):
            return _read_json_lines(path, index)
        return _read_delimited(path, index)
    if options.format == "syncrec":
        return _read_syncrec(path, index)
    if options.format == "abxi":
        return _read_abxi(path, index, options)
    if options.format == "s3rec":
        return _read_s3rec(path, index, options)
    raise InputError(f"unknown --format {options.format!r}; choose one of {', '.join(FORMATS)}")
