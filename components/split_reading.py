"""Reading large text inputs in byte ranges on many workers, with exact line numbers.

A worker that starts reading in the middle of a file does not know which line it is on, yet the
quarantine names file and line. So the read has two passes over each range of CHUNK_BYTES:
  1. count the lines that start in the range (a newline byte is a line start after it);
  2. with every range's count known (prefix sums per file, a small side input), read the lines that
     start in the range and number them from the range's first line number.
A line belongs to the range where it starts, so it is read once even when it crosses the end.
Compressed files and Parquet cannot be split and are read whole by one worker.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import apache_beam as beam

from components import readers

CHUNK_BYTES = 64 << 20


class ByteRange(NamedTuple):
    """Bytes [start, end) of input file `file_index` (end None: the whole file, read by one worker)."""

    file_index: int
    start: int
    end: int | None


def plan_ranges(
    files: Sequence[str], options: readers.ReaderOptions, chunk_bytes: int = CHUNK_BYTES
) -> list[ByteRange]:
    """Ranges covering every file: splittable text files cut every `chunk_bytes`, the others whole."""
    from apache_beam.io.filesystems import FileSystems

    ranges = []
    for index, path in enumerate(files):
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        if (
            readers.is_parquet(path, options)
            or path.endswith((".gz", ".bz2", ".zst", ".deflate"))
            or size <= chunk_bytes
        ):
            ranges.append(ByteRange(index, 0, None))
        else:
            ranges += [ByteRange(index, start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]
    return ranges


def count_line_starts(files: Sequence[str], byte_range: ByteRange) -> tuple[tuple[int, int], int]:
    """((file index, range start), number of lines starting in the range). Pass 1."""
    if byte_range.end is None:
        return (byte_range.file_index, byte_range.start), 0  # read whole: numbered from 1, no count needed
    with readers.open_input(files[byte_range.file_index]) as handle:
        first = max(byte_range.start - 1, 0)
        handle.seek(first)
        data = handle.read(byte_range.end - first)
    # A newline at byte p starts a line at p + 1; it is in this range for p in [start - 1, end - 2]. (A newline
    # as the file's last byte starts nothing: it is at end - 1 of the last range, so it is not counted either.)
    starts = data.count(b"\n", 0, len(data) - 1)
    if byte_range.start == 0:
        starts += 1 if data else 0  # the file's first line starts at byte 0
    return (byte_range.file_index, byte_range.start), starts


def first_line_numbers(counts: list[tuple[tuple[int, int], int]]) -> dict[tuple[int, int], int]:
    """(file index, range start) -> number of the first line starting in that range (prefix sums per file)."""
    numbers, running, current_file = {}, 1, None
    for (file_index, start), count in sorted(counts):
        if file_index != current_file:
            running, current_file = 1, file_index
        numbers[(file_index, start)] = running
        running += count
    return numbers


def read_range(
    files: Sequence[str],
    parsers: dict,
    options: readers.ReaderOptions,
    byte_range: ByteRange,
    first_numbers: dict[tuple[int, int], int],
) -> Iterator[readers.RawRecord]:
    """The records of the lines that start in the range, numbered exactly. Pass 2."""
    path = files[byte_range.file_index]
    if byte_range.end is None:
        yield from readers.read_records(path, byte_range.file_index, options, parsers.get(byte_range.file_index))
        return
    parser = parsers[byte_range.file_index]
    with readers.open_input(path) as handle:
        start = byte_range.start
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":  # mid-line: that line belongs to the previous range
                handle.readline()
                start = handle.tell()
        handle.seek(start)
        number = first_numbers[(byte_range.file_index, byte_range.start)]
        for line_number, line in readers.read_lines(_Bounded(handle, byte_range.end), number):
            if line_number > parser.header_lines:
                yield from parser.parse(byte_range.file_index, line_number, line)


class _Bounded:
    """readline() on a file, stopping at the first line that starts at or after `end`."""

    def __init__(self, handle, end: int):
        self.handle, self.end = handle, end

    def readline(self, limit: int = -1) -> bytes:
        if self.handle.tell() >= self.end:
            return b""
        return self.handle.readline(limit)


@beam.ptransform_fn
def ReadRawRecords(  # noqa: N802 (Beam naming)
    root, files: Sequence[str], options: readers.ReaderOptions, chunk_bytes: int = CHUNK_BYTES
):
    """All records of all files, large text files read in parallel byte ranges with exact line numbers."""
    parsers = {
        i: readers.parser_for(path, options) for i, path in enumerate(files) if not readers.is_parquet(path, options)
    }
    ranges = root | "PlanRanges" >> beam.Create(plan_ranges(files, options, chunk_bytes))
    numbers = (
        ranges
        | "CountLineStarts" >> beam.Map(lambda r: count_line_starts(files, r))
        | "CollectCounts" >> beam.combiners.ToList()
        | "FirstLineNumbers" >> beam.Map(first_line_numbers)
    )
    return (
        ranges
        | "SpreadRanges" >> beam.Reshuffle()
        | "ReadRanges"
        >> beam.FlatMap(
            lambda r, first: read_range(files, parsers, options, r, first), beam.pvalue.AsSingleton(numbers)
        )
    )
