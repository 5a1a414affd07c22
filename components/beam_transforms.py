"""Beam building blocks of the transform component, each a `ptransform_fn` or a pure DoFn.

ReadRawRecords (split_reading: byte ranges on many workers) -> ValidateRows -> GroupUsers ->
(BuildVocabulary) -> BuildExamples -> writers.
Every record leaves either as part of an example or as a quarantined row with its reason;
the stats computed here let the driver check rows_read == rows_accepted + rows_rejected.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Iterable, Sequence

import apache_beam as beam
from apache_beam import pvalue

from components import readers
from components.example_codec import encode_sequence_example
from components.raw_log import TOO_MANY_DOMAINS, RowValidator
from components.sequences import MIN_EVENTS_FOR_SPLIT, leave_one_out
from components.split_reading import CHUNK_BYTES, ReadRawRecords
from schemas.features import SPLITS
from schemas.vocabulary import Vocabulary

REJECTED = "rejected"
STATS = "stats"
DUPLICATES = "duplicates"  # exact duplicate events kept (--duplicates keep), counted in stats.json
LENGTH_BUCKETS = (3, 5, 10, 20, 50, 100, 200, 500, 1000)


def quarantine_line(files: Sequence[str], file_index: int, line: int, reason: str, raw: str) -> str:
    """One JSON line of the quarantine output: where the row was, why it was refused, what it was."""
    return json.dumps({"reason": reason, "file": files[file_index], "line": line, "row": raw}, ensure_ascii=False)


class ValidateRowsFn(beam.DoFn):
    """Schema-check each record: good rows keyed by user, bad rows to the `rejected` output."""

    def __init__(self, files: Sequence[str], domains: Iterable[str] | None):
        self._files = list(files)
        self._domains = list(domains) if domains else None
        self._validator = None

    def setup(self):
        self._validator = RowValidator(domains=self._domains)

    def process(self, record: readers.RawRecord):
        reason = record.reason
        if reason is None:
            event, reason = self._validator.validate(record.row)
            if event is not None:
                yield (
                    event.user_id,
                    (event.timestamp, record.file_index, record.line, record.sub, event.item_id, event.domain),
                )
                return
        yield pvalue.TaggedOutput(
            REJECTED, quarantine_line(self._files, record.file_index, record.line, reason, record.raw)
        )


class FilterShortUsersFn(beam.DoFn):
    """Order a user's events by (time, input position), quarantine exact duplicates (same item, domain
    and time as an earlier event) unless kept, and drop users below `min_events`."""

    def __init__(self, files: Sequence[str], min_events: int, keep_duplicates: bool = False):
        self._files = list(files)
        self._min_events = min_events
        self._keep_duplicates = keep_duplicates

    def _split_duplicates(self, events):
        """(first occurrences, later exact duplicates) of (time, item, domain)."""
        seen, kept, duplicates = set(), [], []
        for event in events:
            key = (event[0], event[4], event[5])
            (duplicates if key in seen else kept).append(event)
            seen.add(key)
        return kept, duplicates

    def process(self, keyed):
        user, events = keyed
        events = sorted(events)
        kept, duplicates = self._split_duplicates(events)
        if duplicates and self._keep_duplicates:
            yield pvalue.TaggedOutput(DUPLICATES, len(duplicates))
        elif duplicates:
            for ts, file_index, line, _sub, item, domain in duplicates:
                raw = json.dumps({"user_id": user, "item_id": item, "domain": domain, "timestamp": ts})
                yield pvalue.TaggedOutput(
                    REJECTED, quarantine_line(self._files, file_index, line, "duplicate_event", raw)
                )
            events = kept
        if len(events) < self._min_events:
            for ts, file_index, line, _sub, item, domain in events:
                raw = json.dumps({"user_id": user, "item_id": item, "domain": domain, "timestamp": ts})
                yield pvalue.TaggedOutput(
                    REJECTED, quarantine_line(self._files, file_index, line, "user_below_min_events", raw)
                )
            return
        yield user, [(item, domain) for _ts, _f, _l, _s, item, domain in events]


class MergeCountersFn(beam.CombineFn):
    """Sum Counters (used for item counts per (domain, item))."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, accumulator, element):
        accumulator.update(element)
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = Counter()
        for acc in accumulators:
            merged.update(acc)
        return merged

    def extract_output(self, accumulator):
        return dict(accumulator)


def make_vocabulary(counts: dict, min_item_count: int, max_domains: int) -> Vocabulary:
    """Vocabulary.from_counts, refusing more domains than the model can take (D towers, gates and
    tasks, and D values a step in every example): the cost grows with D, so D has a clear cap."""
    domains = {domain for domain, _item in counts}
    if len(domains) > max_domains:
        raise ValueError(
            f"{TOO_MANY_DOMAINS}: the input has {len(domains)} domains and the model takes at most {max_domains} "
            "(--max-domains); keep the ones you need with --domains A,B,C"
        )
    return Vocabulary.from_counts(counts, min_item_count)


@beam.ptransform_fn
def BuildVocabulary(users, min_item_count: int, max_domains: int):  # noqa: N802
    """Vocabulary (contiguous id range per domain) from the kept users' events."""
    return (
        users
        | "CountItems" >> beam.Map(lambda kv: Counter((domain, item) for item, domain in kv[1]))
        | "MergeCounts" >> beam.CombineGlobally(MergeCountersFn())
        | "MakeVocabulary" >> beam.Map(make_vocabulary, min_item_count, max_domains)
    )


class BuildExamplesFn(beam.DoFn):
    """Leave-one-out SequenceExamples of one user, tagged by split, plus a per-user stats record."""

    def __init__(self, max_len: int):
        self._max_len = max_len

    def process(self, keyed, vocabulary: Vocabulary):
        user, events = keyed
        ids = [(vocabulary.item_id(domain, item), vocabulary.domain_id(domain)) for item, domain in events]
        examples = leave_one_out(user, ids, vocabulary.num_domains, self._max_len)
        for example in examples:
            yield pvalue.TaggedOutput(example.split, encode_sequence_example(example))
        per_domain = Counter(domain for _item, domain in events)
        yield pvalue.TaggedOutput(
            STATS,
            {
                "length": len(events),
                "domains": dict(per_domain),
                "labels": {ex.split: vocabulary.domain(ex.label_domain).name for ex in examples},
            },
        )


class UserStatsFn(beam.CombineFn):
    """Users, interactions and users per domain, length histogram, label domains per split."""

    def create_accumulator(self):
        return {
            "users": 0,
            "interactions": Counter(),
            "domain_users": Counter(),
            "lengths": Counter(),
            "labels": {s: Counter() for s in SPLITS},
        }

    def add_input(self, acc, element):
        acc["users"] += 1
        acc["interactions"].update(element["domains"])
        acc["domain_users"].update(element["domains"].keys())
        acc["lengths"][_length_bucket(element["length"])] += 1
        for split, domain in element["labels"].items():
            acc["labels"][split][domain] += 1
        return acc

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["users"] += acc["users"]
            for key in ("interactions", "domain_users", "lengths"):
                merged[key].update(acc[key])
            for split in SPLITS:
                merged["labels"][split].update(acc["labels"][split])
        return merged

    def extract_output(self, acc):
        return {
            "users": acc["users"],
            "interactions": dict(acc["interactions"]),
            "domain_users": dict(acc["domain_users"]),
            "lengths": dict(acc["lengths"]),
            "labels": {split: dict(counts) for split, counts in acc["labels"].items()},
        }


def _length_bucket(length: int) -> str:
    for bound in LENGTH_BUCKETS:
        if length <= bound:
            return f"<={bound}"
    return f">{LENGTH_BUCKETS[-1]}"


def assemble_stats(
    rows_read: int,
    reason_counts: list,
    user_stats: dict,
    vocabulary: Vocabulary,
    config: dict,
    duplicates_kept: int = 0,
) -> dict:
    """The stats.json document (pure, so it is tested without a pipeline)."""
    rejected_by_reason = dict(sorted(reason_counts))
    rows_rejected = sum(rejected_by_reason.values())
    rows_accepted = sum(user_stats["interactions"].values())
    domains = {}
    for d in vocabulary.domains:
        domains[d.name] = {
            "id": d.domain_id,
            "items": len(d.items),
            "item_id_range": [d.start, d.end],
            "interactions": user_stats["interactions"].get(d.name, 0),
            "users": user_stats["domain_users"].get(d.name, 0),
            "test_users": user_stats["labels"]["test"].get(d.name, 0),
            "valid_users": user_stats["labels"]["valid"].get(d.name, 0),
        }
    histogram = {
        bucket: user_stats["lengths"].get(bucket, 0)
        for bucket in [f"<={b}" for b in LENGTH_BUCKETS] + [f">{LENGTH_BUCKETS[-1]}"]
    }
    return {
        "rows_read": rows_read,
        "rows_accepted": rows_accepted,
        "rows_rejected": rows_rejected,
        "rejected_by_reason": rejected_by_reason,
        "duplicate_events_kept": duplicates_kept,
        "balanced": rows_read == rows_accepted + rows_rejected,
        "users": user_stats["users"],
        "items": sum(len(d.items) for d in vocabulary.domains),
        "vocabulary_size": vocabulary.num_items,
        "interactions": rows_accepted,
        "domains": domains,
        "examples": {split: user_stats["users"] for split in SPLITS},
        "length_histogram": histogram,
        "config": config,
    }


@beam.ptransform_fn
def TransformLogs(
    root,
    files: Sequence[str],
    options: readers.ReaderOptions,
    domains,
    min_events: int,
    min_item_count: int,
    max_len: int,
    keep_duplicates: bool = False,
    max_domains: int = 100,
    chunk_bytes: int = CHUNK_BYTES,
):  # noqa: N802
    """The whole transform; returns a dict of PCollections (splits, rejected, vocabulary, stats)."""
    records = root | "Read" >> ReadRawRecords(files, options, chunk_bytes)
    validated = records | "Validate" >> beam.ParDo(ValidateRowsFn(files, domains)).with_outputs(REJECTED, main="events")
    users = (
        validated.events
        | "GroupByUser" >> beam.GroupByKey()
        | "FilterShortUsers"
        >> beam.ParDo(FilterShortUsersFn(files, max(min_events, MIN_EVENTS_FOR_SPLIT), keep_duplicates)).with_outputs(
            REJECTED, DUPLICATES, main="users"
        )
    )
    vocabulary = users.users | "Vocabulary" >> BuildVocabulary(min_item_count, max_domains)
    built = users.users | "BuildExamples" >> beam.ParDo(
        BuildExamplesFn(max_len), pvalue.AsSingleton(vocabulary)
    ).with_outputs(*SPLITS, STATS)
    rejected = (validated[REJECTED], users[REJECTED]) | "AllRejected" >> beam.Flatten()
    rows_read = records | "CountRead" >> beam.combiners.Count.Globally()
    reasons = (
        rejected
        | "Reason" >> beam.Map(lambda line: json.loads(line)["reason"])
        | "CountReasons" >> beam.combiners.Count.PerElement()
    )
    user_stats = built[STATS] | "UserStats" >> beam.CombineGlobally(UserStatsFn())
    duplicates = users[DUPLICATES] | "CountDuplicates" >> beam.CombineGlobally(sum)
    return {
        "splits": {split: built[split] for split in SPLITS},
        "rejected": rejected,
        "vocabulary": vocabulary,
        "rows_read": rows_read,
        "reasons": reasons,
        "user_stats": user_stats,
        "duplicates": duplicates,
    }
