"""Published figures on data we hold, shown as rows under ours in `experiments compare`'s test tables (Table 2).

A user choosing a recommender compares it with the best published system on the same data under the same
protocol, so the table that reports our models carries that system's row where, and only where, both match:
the input file's bytes (its SHA-256: a re-split, filtered or re-ordered copy never borrows a published figure),
its format (domains are matched by their index in the file; their names are the user's `--domain-names`) and
the test protocol. A metric the authors did not publish is shown as "–", never estimated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from components.readers import abxi_domain_name, hash_local_file
from model_keras.protocol import EvalProtocol


@dataclass(frozen=True)
class Published:
    """One system's published test figures on one file, under one protocol."""

    system: str  # who, where, and over how many seeds
    input_sha256: str
    input_format: str
    protocol: EvalProtocol
    domains: tuple[dict[str, float], ...]  # by the domain's index in an ABXI file: metric -> value


PUBLISHED = (
    # ABXI (Bian et al., WWW'25), official README at commit 72e52c9 (../shared/data/amazon-beauty-electronics/
    # SOURCE.md): abe_50_preprocessed.txt, leave-one-out, 999 negatives from the label's domain, 5-seed means.
    Published(
        system="ABXI (WWW'25), published, 5 seeds",
        input_sha256="e13235003725700fdc709eb78a8865bd7e4ab75dc28ae569f7a4cebcdab1e33b",
        input_format="abxi",
        protocol=EvalProtocol(num_negatives=999, pool="domain"),
        domains=(
            {"HR@5": 0.2754, "HR@10": 0.3778, "NDCG@10": 0.2200, "MRR": 0.1805},  # 0: Beauty
            {"HR@5": 0.1574, "HR@10": 0.2328, "NDCG@10": 0.1340, "MRR": 0.1160},  # 1: Electronics
        ),
    ),
)


def file_sha256(path: str) -> str | None:
    """SHA-256 of a local file's bytes; None for a folder, a glob or a remote path (nothing published matches)."""
    if not os.path.isfile(path):
        return None
    return hash_local_file(path)


def published_rows(
    input_path: str, input_format: str, domain_names: list[str], protocol: EvalProtocol
) -> dict[str, dict[str, dict[str, float]]]:
    """system -> domain name -> metric -> value, for every entry of PUBLISHED that matches this input and protocol
    (the protocol by what it ranks against: the seed of the negatives' draw is ours, not the authors')."""
    matching = [p for p in PUBLISHED if p.input_format == input_format and p.protocol.describe() == protocol.describe()]
    digest = file_sha256(input_path) if matching else None
    return {
        p.system: {abxi_domain_name(i, domain_names): dict(figures) for i, figures in enumerate(p.domains)}
        for p in matching
        if p.input_sha256 == digest
    }
