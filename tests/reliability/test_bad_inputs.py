"""A corpus of bad inputs, one of each kind a careless or hostile user sends: every bad row is
quarantined with its file, line and reason, every good row arrives, and the accounting balances."""

import json
import subprocess
import sys

import pytest

from components.transform import TransformConfig, run_transform

pytestmark = pytest.mark.slow
HEADER = "user_id,item_id,domain,timestamp"
GOOD = [f"good{u},item{k},{'Books' if k % 2 else 'Toys'},{100 + k}" for u in range(3) for k in range(4)]
BAD_CSV = {  # reason -> a row of the CSV file
    "wrong_field_count": "u9,i1,Books",
    "empty_row": "",
    "empty_user_id": ",i1,Books,100",
    "empty_item_id": "u9,,Books,100",
    "empty_domain": "u9,i1,,100",
    "empty_timestamp": "u9,i1,Books,",
    "bad_timestamp": "u9,i1,Books,yesterday",
    "timestamp_out_of_range": "u9,i1,Books,-7",
    "unknown_domain": "u9,i1,Cars,100",
    "control_characters": 'u9,"i\x07x",Books,100',
    "id_too_long": "u9," + "i" * 300 + ",Books,100",
    "malformed_csv": 'u9,"i1,Books,100',
}
UNDERSCORE_TIME = "u9,i1,Books,1_600_000_000"  # Python's float() would take it; a timestamp must not
HUGE_FIELD = 'u9,"' + "x" * 200_000 + '",Books,100'  # over csv's default field limit: once crashed the job
BAD_JSONL = {
    "missing_user_id": '{"item_id": "i1", "domain": "Books", "timestamp": 1}',
    "bad_id_type": '{"user_id": "u9", "item_id": {"a": 1}, "domain": "Books", "timestamp": 1}',
    "malformed_json": '{"user_id": "u9", ',
    "not_an_object": "[1, 2, 3]",
    "missing_timestamp": '{"user_id": "u9", "item_id": "i1", "domain": "Books"}',
}


def transform_cli(tmp_path):
    """`python -m components.transform` on tmp_path/log.csv into tmp_path/out, as a user runs it. The timeout only
    keeps a hung run from hanging the suite: it is far above what the run takes on a busy machine."""
    command = [sys.executable, "-m", "components.transform", "--input", str(tmp_path / "log.csv")]
    command += ["--format", "raw", "--output", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    with open(folder / "log.csv", "wb") as handle:
        handle.write(b"\xef\xbb\xbf" + (HEADER + "\n").encode())  # a UTF-8 BOM, as Excel writes
        for line in GOOD[:6] + list(BAD_CSV.values()) + [UNDERSCORE_TIME, HUGE_FIELD] + GOOD[6:]:
            handle.write((line + "\n").encode())
        handle.write(b"u9,caf\xe9,Books,100\n")  # non_utf8
        handle.write(b"u9," + b"y" * (9 << 20) + b",Books,100\n")  # line_too_long (9 MiB)
        handle.write(b"short,i1,Books,1\nshort,i2,Books,2\n")  # user_below_min_events
        handle.write(b"good0,item0,Toys,100\n")  # duplicate_event (with --duplicates drop)
    (folder / "more.jsonl").write_text("\n".join(BAD_JSONL.values()) + "\n")
    out = tmp_path_factory.mktemp("out") / "examples"
    stats = run_transform(
        TransformConfig(
            input=str(folder / "*"),
            format="raw",
            output=str(out),
            max_len=5,
            domains=["Books", "Toys"],
            duplicates="drop",
        )
    )
    quarantined = [json.loads(line) for path in sorted((out / "quarantine").glob("*.jsonl")) for line in open(path)]
    return folder, stats, quarantined


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(corpus):
    _, stats, quarantined = corpus
    reasons = {q["reason"] for q in quarantined}
    expected = set(BAD_CSV) | set(BAD_JSONL) | {"non_utf8", "line_too_long", "user_below_min_events", "duplicate_event"}
    assert expected <= reasons, expected - reasons
    assert len(expected) >= 20
    assert stats["rejected_by_reason"]["bad_timestamp"] == 2  # 'yesterday' and '1_600_000_000'
    assert stats["rejected_by_reason"]["id_too_long"] == 2  # the 300-byte id and the 200 KB quoted field


def test_nothing_is_lost_and_every_quarantined_row_says_where_it_was(corpus):
    folder, stats, quarantined = corpus
    assert stats["balanced"] and stats["rows_read"] == stats["rows_accepted"] + stats["rows_rejected"]
    assert stats["rows_accepted"] == len(GOOD) and stats["users"] == 3  # the BOM did not cost the header
    assert stats["rows_rejected"] == len(quarantined)
    for row in quarantined:
        assert row["file"] in (str(folder / "log.csv"), str(folder / "more.jsonl")) and row["line"] >= 1
        assert len(row["row"]) <= 500  # a 9 MiB line is not copied into the quarantine


@pytest.mark.parametrize(
    "content, message",
    [
        (b"x" * (1 << 20), "the first line is over 64 KB, so it is not a header row"),  # 1 MB, no header, no newline
        (b"\xff\xfe" + "user_id".encode("utf-16-le"), "header is not UTF-8"),
        (b"user,item,when\nu,i,1\n", "lacks ['user_id', 'item_id', 'domain', 'timestamp']"),
        (b"user_id,item_id,domain,timestamp\n", "no data rows (empty, or only a header)"),
    ],
)
def test_unusable_files_are_one_clear_error_before_any_work(tmp_path, content, message):
    (tmp_path / "log.csv").write_bytes(content)
    result = transform_cli(tmp_path)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_duplicates_are_kept_and_counted_by_default(tmp_path):
    rows = [HEADER] + [f"u{u},i{k},D,{k}" for u in range(3) for k in range(3)] + ["u0,i1,D,1", "u0,i1,D,1"]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    stats = run_transform(TransformConfig(input=str(tmp_path / "log.csv"), format="raw", output=str(tmp_path / "out")))
    assert stats["duplicate_events_kept"] == 2 and stats["rows_rejected"] == 0 and stats["balanced"]


def test_too_many_domains_is_a_clear_cap(tmp_path):
    rows = [HEADER] + [f"u{u},i{u}-{k},D{u % 150},{k}" for u in range(300) for k in range(3)]
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    result = transform_cli(tmp_path)
    assert result.returncode == 2 and "the input has 150 domains and the model takes at most 100" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out" / "stats.json").exists()
