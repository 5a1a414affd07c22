"""Generate realistic multi-domain interaction logs with a planted negative transfer.

Each user has a taste cluster shared by the "related" domains and, for the planted
negative-transfer domain, an independent cluster: that domain's behaviour carries no
information about the others (and vice versa), which is what makes cross-domain training hurt
it. Within a domain, the next item follows the previous one of the same domain along the
cluster's item chain with probability `p_sequential` (a learnable sequential pattern), else it
is drawn from the user's cluster with Zipf popularity, else from the whole domain.

    python -m synthetic.generator --events 1000000 --output logs.csv [--domains 5 --seed 0]
"""

from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticConfig:
    """How many events, domains, items and users, and how strong each pattern is."""

    events: int = 100_000
    domains: int = 4
    items_per_domain: int = 2_000
    clusters: int = 20
    mean_events_per_user: float = 20.0
    min_events_per_user: int = 5
    negative_transfer_domain: int | None = 0  # index of the unrelated domain (None: none)
    p_sequential: float = 0.5
    p_cluster: float = 0.35
    tie_probability: float = 0.05
    seed: int = 0

    def domain_names(self) -> list[str]:
        """d0, d1, ... with the planted unrelated domain marked."""
        return [f"d{i}" + ("_unrelated" if i == self.negative_transfer_domain else "") for i in range(self.domains)]


def _zipf_weights(n: int, exponent: float = 1.1) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def generate_rows(config: SyntheticConfig):
    """Yield (user_id, item_id, domain, timestamp) rows, `config.events` in total."""
    rng = np.random.default_rng(config.seed)
    names = config.domain_names()
    per_cluster = max(1, config.items_per_domain // config.clusters)
    zipf = _zipf_weights(per_cluster)
    zipf_cdf = np.cumsum(zipf)
    produced, user = 0, 0
    while produced < config.events:
        length = max(config.min_events_per_user, int(rng.geometric(1.0 / config.mean_events_per_user)))
        length = min(length, config.events - produced)
        if length < 1:
            break
        cluster = int(rng.integers(config.clusters))
        unrelated_cluster = int(rng.integers(config.clusters))
        domain_mix = rng.dirichlet(np.full(config.domains, 0.8))
        domains = rng.choice(config.domains, size=length, p=domain_mix)
        draws = rng.random((length, 2))
        ranks = np.searchsorted(zipf_cdf, rng.random(length))
        gaps = np.where(rng.random(length) < config.tie_probability, 0, rng.integers(60, 86_400 * 3, size=length))
        timestamps = 1_500_000_000 + int(rng.integers(0, 86_400 * 365)) + np.cumsum(gaps)
        last_in_domain: dict[int, int] = {}
        for pos in range(length):
            d = int(domains[pos])
            own = unrelated_cluster if d == config.negative_transfer_domain else cluster
            previous = last_in_domain.get(d)
            if previous is not None and draws[pos, 0] < config.p_sequential:
                item = previous // per_cluster * per_cluster + (previous % per_cluster + 1) % per_cluster
            elif draws[pos, 1] < config.p_cluster / (1 - config.p_sequential + 1e-9):
                item = own * per_cluster + int(ranks[pos])
            else:
                item = int(rng.integers(config.clusters)) * per_cluster + int(ranks[pos])
            last_in_domain[d] = item
            yield f"u{user}", f"{names[d]}_i{item}", names[d], int(timestamps[pos])
        produced += length
        user += 1


def write_csv(config: SyntheticConfig, path: str) -> int:
    """Write the log as a canonical raw CSV with a header; returns the number of rows."""
    count = 0
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "domain", "timestamp"])
        for row in generate_rows(config):
            writer.writerow(row)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthetic.generator", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--domains", type=int, default=4)
    parser.add_argument("--items-per-domain", type=int, default=2_000)
    parser.add_argument("--mean-events-per-user", type=float, default=20.0)
    parser.add_argument("--negative-transfer-domain", type=int, default=0, help="-1 for none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    if args.events < 1 or args.domains < 1 or args.items_per_domain < 1:
        parser.error("--events, --domains and --items-per-domain must be positive")
    config = SyntheticConfig(
        events=args.events,
        domains=args.domains,
        items_per_domain=args.items_per_domain,
        mean_events_per_user=args.mean_events_per_user,
        negative_transfer_domain=None if args.negative_transfer_domain < 0 else args.negative_transfer_domain,
        seed=args.seed,
    )
    rows = write_csv(config, args.output)
    print(f"wrote {rows:,} events to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
