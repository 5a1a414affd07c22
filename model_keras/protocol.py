"""The evaluation protocol as a plain dataclass (no TensorFlow), so settings and command lines can read its
defaults without loading the evaluator."""

from __future__ import annotations

from dataclasses import dataclass

POOLS = ("domain", "all")  # negatives from the label's domain, or from all items


@dataclass(frozen=True)
class EvalProtocol:
    """How the label is ranked: among `num_negatives` sampled items (from its domain or from all items)
    that the user has not interacted with, or among all items of its domain (`full_ranking`)."""

    num_negatives: int = 99
    pool: str = "domain"  # one of POOLS
    full_ranking: bool = False
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        if self.pool not in POOLS:
            raise ValueError(f"negatives must come from 'domain' or 'all' (got {self.pool!r})")
        if (
            isinstance(self.num_negatives, bool)
            or not isinstance(self.num_negatives, int)
            or not 1 <= self.num_negatives <= 100_000
        ):
            raise ValueError(
                f"the number of negatives must be a whole number in [1, 100000] (got {self.num_negatives!r})"
            )

    def describe(self) -> str:
        """One line for reports, e.g. '99 negatives from the label's domain'."""
        if self.full_ranking:
            return "full ranking over the label's domain"
        return f"{self.num_negatives} negatives from " + (
            "the label's domain" if self.pool == "domain" else "all items"
        )
