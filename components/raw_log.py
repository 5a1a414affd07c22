"""Validate raw interaction rows against the raw-log schema (`schemas/raw_log.pbtxt`).

A raw row is a mapping with `user_id`, `item_id`, `domain` and `timestamp`. Validation never
raises on bad data: it returns either a clean `Event` or a rejection reason, so the transform
can quarantine the row and count it (rows read = rows accepted + rows rejected).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, NamedTuple

from schemas.schema_io import FieldRule, raw_log_rules

RAW_FIELDS = ("user_id", "item_id", "domain", "timestamp")
TOO_MANY_DOMAINS = "too many domains"  # starts the error the transform gives for inputs over --max-domains

# Every reason a row can be rejected for, with the fix a user should apply. Readers add the
# ones about the file itself (encoding, JSON, field count); validation adds the rest.
REJECT_REASONS: dict[str, str] = {
    "empty_row": "blank line: remove it",
    "line_too_long": "line longer than the readers' MAX_LINE_BYTES (8 MiB): not a row",
    "malformed_csv": "row cannot be parsed as CSV (e.g. an unterminated quote)",
    "non_utf8": "row is not valid UTF-8: re-encode the file as UTF-8",
    "wrong_field_count": "row has a different number of fields than the header",
    "malformed_json": "line is not valid JSON",
    "not_an_object": "JSON line is not an object of field -> value",
    "list_length_mismatch": "item/type/time lists of one user differ in length",
    "malformed_token": "token is not `item|timestamp`",
    "unknown_item": "item index is not in the item map",
    "missing_user_id": "user_id is absent",
    "missing_item_id": "item_id is absent",
    "missing_domain": "domain is absent",
    "missing_timestamp": "timestamp is absent",
    "empty_user_id": "user_id is empty",
    "empty_item_id": "item_id is empty",
    "empty_domain": "domain is empty",
    "empty_timestamp": "timestamp is empty",
    "bad_id_type": "an id is not a string or integer",
    "control_characters": "an id contains control characters (tab, newline, NUL, ...)",
    "id_too_long": "an id is longer than the schema's max_bytes",
    "bad_timestamp": "timestamp is not unix seconds or ISO-8601",
    "timestamp_out_of_range": "timestamp is outside the schema's int_domain",
    "unknown_domain": "domain is not in the configured domain list",
    "user_below_min_events": "user has fewer events than --min-events",
    "duplicate_event": "the same user, item, domain and timestamp as an earlier row (with --duplicates drop)",
}


class Event(NamedTuple):
    """A validated interaction. `timestamp` is unix seconds (float only when fractional)."""

    user_id: str
    item_id: str
    domain: str
    timestamp: float


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from an int, float, numeric string or ISO-8601 string; None if unparsable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not NUMBER.fullmatch(text):  # strict: no '1_600_000_000', 'inf', 'nan' or hex, which float() would take
        if text[:1].isdigit() and "-" in text:  # ISO-8601 dates start with the year
            try:
                parsed = datetime.fromisoformat(text)
            except ValueError:
                return None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            return parsed.timestamp()
        return None
    number = float(text)
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


class RowValidator:
    """Checks rows against the schema's field rules and an optional domain allow-list."""

    def __init__(self, rules: Iterable[FieldRule] | None = None, domains: Iterable[str] | None = None):
        self.rules = {rule.name: rule for rule in (rules or raw_log_rules())}
        missing = [name for name in RAW_FIELDS if name not in self.rules]
        if missing:
            raise ValueError(f"raw-log schema lacks fields {missing}; it must declare {list(RAW_FIELDS)}")
        allowed = self.rules["domain"].allowed
        self.domains = frozenset(domains) if domains else allowed

    def _check_id(self, name: str, value: Any) -> tuple[str | None, str | None]:
        if value is None:
            return None, f"missing_{name}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, "bad_id_type"
        text = value.strip() if isinstance(value, str) else str(value)
        if not text:
            return None, f"empty_{name}"
        if _has_control_chars(text):
            return None, "control_characters"
        rule = self.rules[name]
        if rule.max_bytes is not None and len(text.encode("utf-8")) > rule.max_bytes:
            return None, "id_too_long"
        return text, None

    def validate(self, row: Mapping[str, Any]) -> tuple[Event | None, str | None]:
        """Return (event, None) for a good row, (None, reason) for a bad one."""
        user, reason = self._check_id("user_id", row.get("user_id"))
        if reason:
            return None, reason
        item, reason = self._check_id("item_id", row.get("item_id"))
        if reason:
            return None, reason
        domain, reason = self._check_id("domain", row.get("domain"))
        if reason:
            return None, reason
        if self.domains is not None and domain not in self.domains:
            return None, "unknown_domain"
        raw_ts = row.get("timestamp")
        if raw_ts is None:
            return None, "missing_timestamp"
        if isinstance(raw_ts, str) and not raw_ts.strip():
            return None, "empty_timestamp"
        timestamp = parse_timestamp(raw_ts)
        if timestamp is None:
            return None, "bad_timestamp"
        rule = self.rules["timestamp"]
        if (rule.int_min is not None and timestamp < rule.int_min) or (
            rule.int_max is not None and timestamp > rule.int_max
        ):
            return None, "timestamp_out_of_range"
        return Event(user, item, domain, timestamp), None
