"""Item vocabulary with one contiguous id range per domain (V^d is a range).

Layout: 0 = PAD, 1 = SOS, then for each domain in name order: its OOV id followed by its
items ordered by descending count (ties by item id). Domain ids are 1..D (0 = none).
The JSON artifact written by the transform is read by the model, the evaluator and serving.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Mapping

PAD_ID = 0
SOS_ID = 1
NO_DOMAIN = 0
FIRST_ITEM_ID = 2


@dataclass(frozen=True)
class DomainRange:
    """Domain `domain_id` owns item ids [start, end); `start` is its OOV id."""

    domain_id: int
    name: str
    start: int
    end: int
    items: tuple[str, ...]

    @property
    def oov_id(self) -> int:
        """The id unseen or rare items of this domain map to."""
        return self.start


class Vocabulary:
    """Maps raw (domain, item id) strings to model ids and back."""

    def __init__(self, domains: Iterable[DomainRange], min_item_count: int = 1):
        self.domains = tuple(domains)
        self.min_item_count = min_item_count
        self.num_items = self.domains[-1].end if self.domains else FIRST_ITEM_ID
        self._by_name = {d.name: d for d in self.domains}
        self._ids = {d.name: {item: d.start + 1 + offset for offset, item in enumerate(d.items)} for d in self.domains}

    # ------------------------------------------------------------------ building
    @classmethod
    def from_counts(cls, counts: Mapping[tuple[str, str], int], min_item_count: int = 1) -> "Vocabulary":
        """Build from {(domain, item): count}; items under `min_item_count` fall to the OOV id."""
        by_domain: dict[str, list[tuple[int, str]]] = {}
        for (domain, item), count in counts.items():
            by_domain.setdefault(domain, [])
            if count >= min_item_count:
                by_domain[domain].append((-count, item))
        ranges, start = [], FIRST_ITEM_ID
        for domain_id, name in enumerate(sorted(by_domain), start=1):
            items = tuple(item for _, item in sorted(by_domain[name]))
            end = start + 1 + len(items)
            ranges.append(DomainRange(domain_id, name, start, end, items))
            start = end
        return cls(ranges, min_item_count)

    # ------------------------------------------------------------------ lookups
    @property
    def num_domains(self) -> int:
        """D."""
        return len(self.domains)

    @property
    def domain_names(self) -> list[str]:
        """Domain names in id order."""
        return [d.name for d in self.domains]

    def domain(self, name_or_id: str | int) -> DomainRange:
        """A domain by name or id; KeyError naming the known ones."""
        if isinstance(name_or_id, int):
            if not 1 <= name_or_id <= len(self.domains):
                raise KeyError(f"domain id {name_or_id} is not in 1..{len(self.domains)}")
            return self.domains[name_or_id - 1]
        if name_or_id not in self._by_name:
            raise KeyError(f"unknown domain {name_or_id!r}; known: {self.domain_names}")
        return self._by_name[name_or_id]

    def domain_id(self, name: str) -> int:
        """The id (1..D) of a domain name."""
        return self.domain(name).domain_id

    def item_id(self, domain: str, item: str) -> int:
        """Model id of `item` in `domain`; the domain's OOV id for rare or unseen items."""
        ids = self._ids[domain]
        found = ids.get(item)
        return found if found is not None else self._by_name[domain].oov_id

    def item_name(self, item_id: int) -> str:
        """Raw item id string for a model id ('[PAD]', '[SOS]', '[OOV:domain]' for reserved ids)."""
        if item_id == PAD_ID:
            return "[PAD]"
        if item_id == SOS_ID:
            return "[SOS]"
        for d in self.domains:
            if d.start <= item_id < d.end:
                return f"[OOV:{d.name}]" if item_id == d.start else d.items[item_id - d.start - 1]
        raise KeyError(f"item id {item_id} is outside the vocabulary (0..{self.num_items - 1})")

    def item_names(self) -> list[str]:
        """Raw name of every id in id order (what item_name gives, built in one pass)."""
        names = ["[PAD]", "[SOS]"]
        for d in self.domains:
            names.append(f"[OOV:{d.name}]")
            names.extend(d.items)
        return names

    def domain_of_item(self, item_id: int) -> int:
        """The domain id of an item id (0 for PAD, SOS and ids outside)."""
        for d in self.domains:
            if d.start <= item_id < d.end:
                return d.domain_id
        return NO_DOMAIN

    # ------------------------------------------------------------------ artifact
    def to_json(self) -> dict:
        """The vocabulary.json document."""
        return {
            "pad_id": PAD_ID,
            "sos_id": SOS_ID,
            "num_items": self.num_items,
            "min_item_count": self.min_item_count,
            "domains": [
                {
                    "id": d.domain_id,
                    "name": d.name,
                    "start": d.start,
                    "end": d.end,
                    "oov_id": d.oov_id,
                    "items": list(d.items),
                }
                for d in self.domains
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping) -> "Vocabulary":
        """Rebuild from the vocabulary.json document."""
        ranges = [DomainRange(d["id"], d["name"], d["start"], d["end"], tuple(d["items"])) for d in data["domains"]]
        return cls(ranges, data.get("min_item_count", 1))

    def save(self, path: str) -> None:
        """Write vocabulary.json."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_json(), handle)

    @classmethod
    def load(cls, path: str) -> "Vocabulary":
        """Read vocabulary.json; ValueError naming the fix when it cannot be read."""
        from schemas.features import read_text

        try:
            return cls.from_json(json.loads(read_text(path)))
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"cannot read vocabulary {path}: {err}; re-run components.transform") from err
