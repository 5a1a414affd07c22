"""Row validation against schemas/raw_log.pbtxt."""

import pytest

from components.raw_log import REJECT_REASONS, Event, RowValidator, parse_timestamp
from schemas.schema_io import raw_log_rules

GOOD = {"user_id": "u1", "item_id": "i1", "domain": "Books", "timestamp": "1357430400"}


def check(row, domains=None):
    return RowValidator(domains=domains).validate(row)


def test_schema_rules_are_read_from_the_pbtxt():
    rules = {r.name: r for r in raw_log_rules()}
    assert set(rules) == {"user_id", "item_id", "domain", "timestamp"}
    assert rules["user_id"].max_bytes == 256 and rules["timestamp"].kind == "int"
    assert all(r.required for r in rules.values())


def test_good_row_becomes_an_event():
    assert check(GOOD) == (Event("u1", "i1", "Books", 1357430400), None)
    assert check({**GOOD, "user_id": " u1 ", "timestamp": 5})[0].user_id == "u1"
    assert check({**GOOD, "user_id": 42})[0].user_id == "42"  # integer ids from JSON/Parquet


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"user_id": None}, "missing_user_id"),
        ({"item_id": None}, "missing_item_id"),
        ({"domain": None}, "missing_domain"),
        ({"timestamp": None}, "missing_timestamp"),
        ({"user_id": "  "}, "empty_user_id"),
        ({"item_id": ""}, "empty_item_id"),
        ({"domain": ""}, "empty_domain"),
        ({"timestamp": " "}, "empty_timestamp"),
        ({"item_id": ["a"]}, "bad_id_type"),
        ({"user_id": True}, "bad_id_type"),
        ({"item_id": "a\x00b"}, "control_characters"),
        ({"user_id": "x" * 300}, "id_too_long"),
        ({"timestamp": "yesterday"}, "bad_timestamp"),
        ({"timestamp": "nan"}, "bad_timestamp"),
        ({"timestamp": -5}, "timestamp_out_of_range"),
        ({"timestamp": 10**12}, "timestamp_out_of_range"),
    ],
)
def test_bad_rows_get_their_reason(change, reason):
    assert check({**GOOD, **change}) == (None, reason)
    assert reason in REJECT_REASONS


def test_domain_allow_list():
    assert check(GOOD, domains=["Books"])[1] is None
    assert check({**GOOD, "domain": "Toys"}, domains=["Books"]) == (None, "unknown_domain")


def test_timestamp_forms():
    assert parse_timestamp("12") == 12 and parse_timestamp(12.5) == 12.5
    assert parse_timestamp("1970-01-02T00:00:00Z") == 86400
    assert parse_timestamp("1970-01-02") == 86400
    assert parse_timestamp(float("inf")) is None and parse_timestamp(False) is None
