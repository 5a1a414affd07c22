"""The data contract's sequence settings, defined once: their defaults and their ranges.

The transform (components), the model (model_keras: T must match the examples) and the pipeline all read
these; each range is checked by `problems`, the one check of these settings."""

from __future__ import annotations

# name -> (default, lowest, highest, what it means)
SEQUENCE_SETTINGS = {
    "max_len": (50, 1, 4096, "T: the most recent steps kept per sequence (the paper: 128)"),
    "min_events": (3, 3, 1_000_000, "users with fewer events are quarantined (>= 3 for leave-one-out)"),
    "min_item_count": (1, 1, 1_000_000, "items seen fewer times map to their domain's OOV id"),
}


def default(name: str) -> int:
    return SEQUENCE_SETTINGS[name][0]


def doc(name: str) -> str:
    return SEQUENCE_SETTINGS[name][3]


def problems(values: dict, prefix: str = "") -> list[str]:
    """A message for each of `values` (name -> value) outside its range."""
    out = []
    for name, value in values.items():
        _default, low, high, _doc = SEQUENCE_SETTINGS[name]
        if not low <= value <= high:
            out.append(f"{prefix}{name} must be in [{low}, {high}] (got {value})")
    return out
