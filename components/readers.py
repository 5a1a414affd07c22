"""Readers that turn input files into raw-log records, one per interaction.

Formats:
  raw      canonical log: CSV/TSV with a header naming user_id, item_id, domain, timestamp
           (any order, delimiter detected), JSON Lines (.jsonl/.ndjson/.json) or Parquet.
  syncrec  the official SyNCRec sample: TSV, one user per line, comma-separated lists.
  abxi     ABXI sequences `user item|ts ...` plus `map_item_50.txt` (item -> [idx, domain]).
  s3rec    S3-Rec `user item item ...`, single domain, no timestamps (file order is kept).

Every file is opened through Beam's FileSystems, so any path Beam understands works (local paths,
gs://, s3://, hdfs:// with the matching Beam extra; .gz and .bz2 are decompressed). A text format is
read by a `LineParser` built once per file (`parser_for`, which reads its header or maps and fails
early with InputError) that turns one line into records; whole-file reading (`read_records`) and the
byte-range reading that splits a large file across workers (components.split_reading) use the same
parsers. Readers never validate ids or timestamps (that is `raw_log.RowValidator`'s job); they only
report rows they cannot even split into fields, with a reason. Every record carries (file index,
line number, position in line) so that ties in time keep input order.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterator, NamedTuple

FORMATS = ("raw", "syncrec", "abxi", "s3rec")
JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")
RAW_COLUMNS = ("user_id", "item_id", "domain", "timestamp")
MAX_LINE_BYTES = 8 << 20  # a longer line is quarantined as line_too_long, never read whole into memory
_RAW_TEXT_MAX = 500
_BOM = b"\xef\xbb\xbf"
csv.field_size_limit(MAX_LINE_BYTES)  # one field may fill a line; ids that long are then refused as id_too_long


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


# ---------------------------------------------------------------- files through Beam's FileSystems
def _filesystems():
    from apache_beam.io.filesystems import FileSystems

    return FileSystems


def is_local(path: str) -> bool:
    """True for a plain local path (no URL scheme)."""
    return _filesystems().get_scheme(path) is None


def _matched(pattern: str) -> list:
    """Beam FileMetadata of the files (not folders) a path, directory or glob matches; InputError when none."""
    filesystems = _filesystems()
    if is_local(pattern) and os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    elif not is_local(pattern) and pattern.endswith("/"):
        pattern += "*"
    try:
        matched = filesystems.match([pattern])[0].metadata_list
    except Exception as err:  # BeamIOError, ValueError (unknown scheme), ...
        raise InputError(f"input {pattern!r} cannot be listed: {err}") from err
    files = [m for m in matched if not (is_local(m.path) and os.path.isdir(m.path))]
    if not files:
        raise InputError(f"input {pattern!r} matches no file: pass an existing file, directory or glob")
    return files


def expand_input(pattern: str) -> list[str]:
    """Files matching a path, directory or glob (any Beam filesystem), sorted; InputError when none match."""
    return sorted(m.path for m in _matched(pattern))


def listing(pattern: str) -> list[tuple[str, int, float]]:
    """(path, size in bytes, last modified) of every file a pattern matches, sorted (any Beam filesystem:
    for object stores the modification time changes with each new object generation)."""
    return sorted(
        (m.path, int(m.size_in_bytes), float(getattr(m, "last_updated_in_seconds", 0.0) or 0.0))
        for m in _matched(pattern)
    )


def open_input(path: str):
    """A binary file object on any Beam filesystem (.gz/.bz2 decompressed)."""
    try:
        return _filesystems().open(path)
    except Exception as err:  # noqa: BLE001 (each filesystem raises its own kinds)
        raise InputError(f"cannot open {path}: {err}") from err


def sibling(path: str, name: str) -> str:
    """A file beside `path` (works for local paths and URLs alike)."""
    return _filesystems().join(_filesystems().split(path)[0], name)


def basename(path: str) -> str:
    """The file name of a local path or a URL."""
    return PurePosixPath(path).name if not is_local(path) else os.path.basename(path)


def hash_local_file(path: str, digest=None) -> str:
    """Feed a local file's bytes into `digest` (a new SHA-256 when None), 1 MiB at a time so that a large input is
    never read whole, and return its hex digest. The one way the project hashes file contents: the transform's
    input fingerprint, the run cache's keys and manifests, the pusher's content hash and the published figures'
    file match."""
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_data_file(path: str) -> bool:
    """False for files that sit beside data but are not data: docs and ABXI's map_*.txt."""
    return not path.endswith(".md") and not basename(path).startswith("map_")


def _raw_text(data: bytes | str) -> str:
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return text[:_RAW_TEXT_MAX]


def _decode(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def read_lines(handle, first_number: int = 1) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes without the line break) of each line; bytes None for a line longer than
    MAX_LINE_BYTES (skipped in chunks, never held whole). A UTF-8 BOM at the start of the file is dropped."""
    number = first_number
    while True:
        line = handle.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if number == 1 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):
                line = handle.readline(MAX_LINE_BYTES)
            yield number, None
        else:
            yield number, line.rstrip(b"\r\n")
        number += 1


# ---------------------------------------------------------------- one parser per text format
class LineParser:
    """Turns one line of a file (its index among the inputs, its number, its bytes) into records."""

    header_lines = 0  # lines at the top that are not data

    def parse(self, index: int, number: int, line: bytes | None) -> list[RawRecord]:
        if line is None:
            return [RawRecord(index, number, 0, None, "line_too_long", f"(more than {MAX_LINE_BYTES} bytes)")]
        text = _decode(line)
        if text is None:
            return [RawRecord(index, number, 0, None, "non_utf8", _raw_text(line))]
        if not text.strip():
            return [RawRecord(index, number, 0, None, "empty_row", text)]
        return self.parse_text(index, number, text)

    def parse_text(self, index: int, number: int, text: str) -> list[RawRecord]:
        raise NotImplementedError


class DelimitedParser(LineParser):
    """raw CSV/TSV: one row a line, columns named by the header (any order)."""

    header_lines = 1

    def __init__(self, delimiter: str, columns: list[str]):
        self.delimiter, self.width = delimiter, len(columns)
        self.positions = {name: columns.index(name) for name in RAW_COLUMNS}

    def parse_text(self, index, number, text):
        try:
            values = (
                next(csv.reader([text], delimiter=self.delimiter, strict=True))
                if '"' in text
                else text.split(self.delimiter)
            )
        except csv.Error:
            return [RawRecord(index, number, 0, None, "malformed_csv", _raw_text(text))]
        if len(values) != self.width:
            return [RawRecord(index, number, 0, None, "wrong_field_count", _raw_text(text))]
        return [
            RawRecord(
                index, number, 0, {name: values[pos] for name, pos in self.positions.items()}, None, _raw_text(text)
            )
        ]


class JsonLinesParser(LineParser):
    """raw JSON Lines: one object a line."""

    def parse_text(self, index, number, text):
        try:
            value = json.loads(text)
        except ValueError:
            return [RawRecord(index, number, 0, None, "malformed_json", _raw_text(text))]
        if not isinstance(value, dict):
            return [RawRecord(index, number, 0, None, "not_an_object", _raw_text(text))]
        return [RawRecord(index, number, 0, value, None, _raw_text(text))]


class SyncrecParser(LineParser):
    """The official SyNCRec sample: one user a line, comma-separated item/type/time lists."""

    header_lines = 1

    def __init__(self, columns: list[str]):
        self.width = len(columns)
        self.positions = {k: columns.index(k) for k in ("user_id", "item", "type", "unix_time")}

    def parse_text(self, index, number, text):
        values = text.split("\t")
        if len(values) != self.width:
            return [RawRecord(index, number, 0, None, "wrong_field_count", _raw_text(text))]
        items, types, times = (values[self.positions[k]].split(",") for k in ("item", "type", "unix_time"))
        if not (len(items) == len(types) == len(times)):
            return [RawRecord(index, number, 0, None, "list_length_mismatch", _raw_text(text))]
        user = values[self.positions["user_id"]]
        return [
            RawRecord(
                index,
                number,
                sub,
                {"user_id": user, "item_id": item, "domain": domain, "timestamp": ts},
                None,
                f"{user}\t{item}\t{domain}\t{ts}",
            )
            for sub, (item, domain, ts) in enumerate(zip(items, types, times))
        ]


class AbxiParser(LineParser):
    """ABXI: `user item|ts ...`, item indices mapped to (ASIN, domain) by map_item_50.txt."""

    def __init__(self, items: dict[str, tuple[str, str]], users: dict[str, str]):
        self.items, self.users = items, users

    def parse_text(self, index, number, text):
        tokens = text.split()
        user = self.users.get(tokens[0], tokens[0])
        records = []
        for sub, token in enumerate(tokens[1:]):
            if token.count("|") != 1:
                records.append(RawRecord(index, number, sub, None, "malformed_token", _raw_text(token)))
                continue
            idx, ts = token.split("|")
            if idx not in self.items:
                records.append(RawRecord(index, number, sub, None, "unknown_item", _raw_text(token)))
                continue
            asin, domain = self.items[idx]
            records.append(
                RawRecord(
                    index,
                    number,
                    sub,
                    {"user_id": user, "item_id": asin, "domain": domain, "timestamp": ts},
                    None,
                    token,
                )
            )
        return records


class S3recParser(LineParser):
    """S3-Rec: `user item item ...`, one domain; the position in the line is the time (file order kept)."""

    def __init__(self, domain: str):
        self.domain = domain

    def parse_text(self, index, number, text):
        tokens = text.split()
        return [
            RawRecord(
                index,
                number,
                sub,
                {"user_id": tokens[0], "item_id": item, "domain": self.domain, "timestamp": sub},
                None,
                _raw_text(item),
            )
            for sub, item in enumerate(tokens[1:])
        ]


# ---------------------------------------------------------------- what each file needs before its lines
def _first_line(path: str) -> bytes:
    """The first line of a file (BOM dropped), at most 64 KB: a header longer than that is not a header."""
    with open_input(path) as handle:
        first = handle.readline(65536)
    if first.startswith(_BOM):
        first = first[len(_BOM) :]
    if len(first) >= 65536 and not first.endswith(b"\n"):
        raise InputError(
            f"{path}: the first line is over 64 KB, so it is not a header row; "
            f"the first row must name {', '.join(RAW_COLUMNS)} (or pass the right --format)"
        )
    return first.rstrip(b"\r\n")


def read_header(path: str) -> tuple[str, list[str]]:
    """Delimiter and lower-cased column names of a delimited raw log; InputError if unusable."""
    text = _decode(_first_line(path))
    if text is None:
        raise InputError(f"{path}: header is not UTF-8; re-encode the file as UTF-8")
    delimiter = "\t" if "\t" in text else ","
    try:
        columns = [c.strip().lower() for c in next(csv.reader([text], delimiter=delimiter))]
    except (csv.Error, StopIteration) as err:
        raise InputError(
            f"{path}: the header row cannot be read as CSV ({err}); the first row must name {', '.join(RAW_COLUMNS)}"
        ) from err
    missing = [c for c in RAW_COLUMNS if c not in columns]
    if missing:
        raise InputError(
            f"{path}: header {columns[:10]} lacks {missing}; the first row must name "
            "user_id, item_id, domain, timestamp (any order, comma- or tab-separated)"
        )
    return delimiter, columns


def _syncrec_parser(path: str) -> SyncrecParser:
    columns = [c.strip() for c in (_decode(_first_line(path)) or "").split("\t")]
    try:
        return SyncrecParser(columns)
    except ValueError as err:
        raise InputError(f"{path}: SyNCRec header {columns[:10]} lacks user_id/item/type/unix_time") from err


def _load_json_map(path: str, what: str) -> dict:
    try:
        with open_input(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (InputError, OSError, ValueError) as err:
        raise InputError(f"cannot read the ABXI {what} map {path}: {err}; pass it with --{what}-map") from err


def abxi_domain_name(index: int, names: tuple[str, ...] | list[str]) -> str:
    """The name of ABXI's domain `index`: the one given with --domain-names, else domain_<index>."""
    return names[index] if index < len(names) else f"domain_{index}"


def abxi_maps(path: str, options: ReaderOptions) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """ABXI item index -> (ASIN, domain name) and user index -> reviewer id (if a map exists)."""
    item_map = _load_json_map(options.item_map or sibling(path, "map_item_50.txt"), "item")
    items = {}
    for asin, (idx, domain) in item_map.items():
        items[str(idx)] = (asin, abxi_domain_name(int(domain), options.domain_names))
    user_path = options.user_map or sibling(path, "map_user_50.txt")
    users = (
        {str(v): k for k, v in _load_json_map(user_path, "user").items()} if _filesystems().exists(user_path) else {}
    )
    return items, users


def is_parquet(path: str, options: ReaderOptions) -> bool:
    """True for a Parquet input of the raw format (read whole, not by lines)."""
    return options.format == "raw" and path.endswith(PARQUET_SUFFIXES)


def parser_for(path: str, options: ReaderOptions) -> LineParser:
    """The line parser of a text input (its header or maps read now: InputError when unusable)."""
    if options.format == "raw":
        if path.endswith(JSON_SUFFIXES):
            return JsonLinesParser()
        return DelimitedParser(*read_header(path))
    if options.format == "syncrec":
        return _syncrec_parser(path)
    if options.format == "abxi":
        return AbxiParser(*abxi_maps(path, options))
    if options.format == "s3rec":
        return S3recParser(options.single_domain or PurePosixPath(basename(path)).stem)
    raise InputError(f"unknown --format {options.format!r}; choose one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- whole files
def _read_parquet(path: str, index: int) -> Iterator[RawRecord]:
    import pyarrow.parquet as pq

    try:
        with open_input(path) as handle:
            parquet = pq.ParquetFile(handle)
            names = set(parquet.schema_arrow.names)
            missing = [c for c in RAW_COLUMNS if c not in names]
            if missing:
                raise InputError(f"{path}: Parquet columns {sorted(names)} lack {missing}")
            number = 0
            for batch in parquet.iter_batches(columns=list(RAW_COLUMNS)):
                for row in batch.to_pylist():
                    number += 1
                    yield RawRecord(index, number, 0, row, None, _raw_text(json.dumps(row, default=str)))
    except InputError:
        raise
    except Exception as err:  # pyarrow raises several types for a bad file
        raise InputError(f"cannot read Parquet file {path}: {err}") from err


def check_readable(path: str, options: ReaderOptions) -> None:
    """Fail fast, before any pipeline starts, on a file that cannot be read at all."""
    if options.format not in FORMATS:
        raise InputError(f"unknown --format {options.format!r}; choose one of {', '.join(FORMATS)}")
    if is_parquet(path, options):
        next(_read_parquet(path, 0), None)
    else:
        parser_for(path, options)


def read_records(
    path: str, index: int, options: ReaderOptions, parser: LineParser | None = None
) -> Iterator[RawRecord]:
    """All records of one file in file order."""
    if is_parquet(path, options):
        yield from _read_parquet(path, index)
        return
    parser = parser or parser_for(path, options)
    with open_input(path) as handle:
        for number, line in read_lines(handle):
            if number > parser.header_lines:
                yield from parser.parse(index, number, line)
