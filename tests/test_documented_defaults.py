"""The settings tables a person reads (README's Configure, docs/architecture.md's model settings) state the
defaults the code has. The code is the one source; these tables repeat it for the reader, and they had drifted
(architecture.md still said `bce` and no weight decay two defaults later), so this test reads every row whose
settings are backticked names and whose default cell has one value per name, and compares."""

import dataclasses
import math
import re
from pathlib import Path

import pytest

from model_keras.config import ModelConfig
from pipeline.config import DEFAULT_MODEL, PipelineConfig

REPO = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^\| ((?:`\w+`(?:, )?)+) \| ([^|]+) \|")


def stated_defaults(path: Path) -> list[tuple[str, str]]:
    """(setting, the default as written) for each table row that names settings and gives one value each."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if not match:
            continue
        names = re.findall(r"`(\w+)`", match.group(1))
        values = [v.split(" (")[0].strip().strip("`") for v in match.group(2).split(", ")]
        if len(values) == len(names):
            pairs += zip(names, values)
    return pairs


def same(written: str, value) -> bool:
    """Whether the table's text states `value` (true/false, numbers in any spelling, '' for the empty string)."""
    if isinstance(value, bool):
        return written == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return math.isclose(float(written), value)
        except ValueError:
            return False
    return written.strip("'\"") == value


def model_defaults() -> dict:
    return ModelConfig().to_dict()


def pipeline_defaults() -> dict:
    fields = {f.name: f.default for f in dataclasses.fields(PipelineConfig)}
    return {**model_defaults(), **DEFAULT_MODEL, **fields}


@pytest.mark.parametrize(
    "document, defaults, at_least",
    [("docs/architecture.md", model_defaults, 20), ("README.md", pipeline_defaults, 10)],
)
def test_every_default_a_settings_table_states_is_the_codes(document, defaults, at_least):
    code = defaults()
    rows = [(name, written) for name, written in stated_defaults(REPO / document) if name in code]
    assert len(rows) >= at_least, f"{document}: the settings table was not found ({len(rows)} rows read)"
    wrong = [
        f"{name}: says {written!r}, the code has {code[name]!r}" for name, written in rows if not same(written, code[name])
    ]
    assert not wrong, f"{document} states defaults the code does not have:\n" + "\n".join(wrong)
