"""One typed config for the SyNCRec model and its training (pipeline/CLI -> here -> layers).

Paper defaults (§5.2.3): r = 128, T = 128, batch 128, K = 4 experts on Amazon, Adam. The paper
gives j = 0.2K in §4.2.1 but reports j = 3 of 5 as best in §5.6 ("more experts for the harder
CDSR task"), and the official code uses j = 0.8K; so j is explicit, default 3 of 4.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

LOSSES = ("bce", "bpr", "eq8")
MODES = ("syncrec", "sdsr")
ARCHITECTURES = ("syncrec", "sasrec", "gru4rec", "bprmf")


@dataclass
class ModelConfig:
    """Hyper-parameters of SyNCRec; `num_items`/`num_domains`/`max_len` come from the data."""

    num_items: int = 0
    num_domains: int = 0
    max_len: int = 50
    embed_dim: int = 64  # r
    num_experts: int = 4  # K
    num_cross_experts: int = 3  # j: experts 1..j learn only from the cross-domain task
    num_blocks: int = 2  # transformer blocks per expert
    num_heads: int = 1
    dropout: float = 0.2
    loss: str = "bce"  # "eq8": Eq. 8 literally; "bpr": log-sigmoid of logit gap; "bce": official code
    eta: float = 0.9  # harmonic factor of Eq. 18
    temperature: float = 1.0  # initial delta of Eq. 11
    mim_temperature: float = 1.0  # divides rho (Eq. 17) inside InfoNCE; 1.0 is the paper
    use_lc_ntg: bool = True
    use_sc_mim: bool = True
    use_acmoe: bool = True  # False: vanilla MMoE, no stop-gradient
    mode: str = "syncrec"  # "sdsr": single-domain tasks only (negative-transfer reference)
    architecture: str = "syncrec"  # or a baseline: "sasrec", "gru4rec", "bprmf" (model_keras/baselines.py)
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 10
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> "ModelConfig":
        problems = []
        if self.num_items < 3 or self.num_domains < 1:
            problems.append("num_items and num_domains must come from the vocabulary")
        if not 0 <= self.num_cross_experts <= self.num_experts or self.num_experts < 1:
            problems.append(f"need 0 <= num_cross_experts (j={self.num_cross_experts}) <= num_experts (K={self.num_experts}), K >= 1")
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}")
        if self.architecture not in ARCHITECTURES:
            problems.append(f"architecture must be one of {ARCHITECTURES}")
        if self.mode not in MODES:
            problems.append(f"mode must be one of {MODES}")
        if not 0.0 <= self.eta <= 1.0:
            problems.append("eta must be in [0, 1]")
        if self.temperature <= 0 or self.mim_temperature <= 0:
            problems.append("temperatures must be > 0")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build from a dict (YAML, --set flags); unknown keys are an error naming them."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(values))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
