"""One typed config for every model and its training (pipeline/CLI -> here -> layers).

Each setting is defined once, here, with its default and its check. Paper defaults (§5.2.3) are
r = 128, T = 128, batch 128, K = 4 experts on Amazon, two attention blocks, Adam; `PRESETS["paper"]`
holds them. Where the paper is silent or loose, the choice is a named setting (see DEVIATIONS).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from model_keras import registry
from schemas import sequence_settings

LOSSES = ("bce", "bpr", "eq8", "softmax", "full_softmax")
SOFTMAX_SAMPLING = ("uniform", "popularity")
SOFTMAX_NEGATIVES = ("batch", "sequence")
SOFTMAX_NEGATIVE_DOMAINS = ("target", "all")
REDUCTIONS = ("sum", "mean", "domain_mean", "sequence_domain_mean")
LAMBDA_SCALES = ("domains", "one")
MODES = ("syncrec", "sdsr")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")  # model_keras.distribute
PREDICTION_TOWERS = ("valid", "cross")
SELECTION_VIEWS = ("cross", "both")
# Settings applied to the selected weights after training (train.apply_prediction_towers): they do not change
# what is trained, so a finished run is reused under any value of them (experiments.runner.run_folder).
POST_TRAINING_SETTINGS = ("prediction_towers", "tower_choice_margin")
# Settings added after runs were recorded, with the value that trains exactly as the code before them did: a run
# folder's digest leaves a setting out at that value (experiments.runner.run_folder), so runs made before it
# existed are still found and reused.
ADDED_SETTINGS = {
    "sort_window": 0,
    "cross_tower_per_domain": False,
    "softmax_sampling": "uniform",
    "fused_loss_weight": 0.0,
    "softmax_negatives": "batch",
    "softmax_negative_domains": "target",
    "selection_view": "cross",
}

# Where our defaults differ from the paper's letter, and why; `PRESETS["paper"]` undoes each.
DEVIATIONS = {
    "loss": "softmax: a sampled softmax over 128 items of the target's domain, drawn for each sequence and leaving out "
    "its own items, at temperature 0.75 (ABXI's objective; results 20 for the draw) "
    "instead of Eq. 8's log-sigmoid of probability differences against one negative: with it and the capacity below, "
    "ABE's test NDCG@10 under 999 negatives rises from 0.12 to 0.15 (3 seeds each, both towers summed where valid "
    "chose them; docs/results.md, results 16)",
    "embed_dim": "r = 256 in one transformer block of two heads per expert, dropout 0.5, AdamW (weight decay 1e-3) "
    "with 5 warm-up epochs (ABXI's capacity and regularisation) instead of r = 128 in two single-head blocks with "
    "Adam (docs/results.md, results 16)",
    "lr_plateau_patience": "the learning rate falls by 0.3162 after 5 epochs without a better valid NDCG@10 and training "
    "stops after 11 (ABXI's decay after 30 and stop after 61, compressed by its own rule) instead of a constant rate "
    "and patience 10: valid rose under both protocols at each of 3 seeds, and ABE's test NDCG@10 under 999 negatives "
    "from 0.1931 / 0.1201 to 0.2083 / 0.1250 (Beauty / Electronics; docs/results.md, results 19)",
    "lambda_scale": "LC-NTG weights |D|*lambda_d (mean one), so uniform lambda leaves the cross loss as it is",
    "num_cross_experts": "j = 3 of K = 4 (best in §5.6, near the official 0.8K) instead of §4.2.1's j = 0.2K",
    "learn_ntg_coefficients": "alpha = beta = 1 fixed instead of learned: learned through sum(lambda*L) they push lambda "
    "toward the domain with the lower cross loss until it runs away (docs/results.md, results 3); fixed, lambda stays bounded",
    "use_sc_mim": "SC-MIM (Eq. 14-17) left out of Eq. 18's loss: on amazon-beauty-electronics at 3 seeds the model "
    "without it ties the full model on test and is ahead on valid at every seed, which the default's rule asks for "
    "(docs/results.md, results 9), and each step computes one loss fewer",
    "prediction_towers": "each domain is served by whichever beats the cross tower on valid NDCG@10 by more than "
    "`tower_choice_margin` standard errors after training, its single-domain tower or both towers summed, instead of "
    "always the cross tower (Eq. 19): where a domain suffers negative transfer its single tower holds the accuracy "
    "Eq. 19 would throw away (docs/results.md, results 12), and where both views hold some, their sum ranks better "
    "than either (results 17)",
}


@dataclass
class ModelConfig:
    """Hyper-parameters of SyNCRec and the baselines; `num_items`/`num_domains`/`max_len` come from the data."""

    num_items: int = 0
    num_domains: int = 0
    max_len: int = sequence_settings.default("max_len")  # T (reset from the examples when training)
    embed_dim: int = 256  # r (ABXI's; the paper's 128 in the `paper` preset)
    num_experts: int = 4  # K
    num_cross_experts: int = 3  # j: experts 1..j learn only from the cross-domain task (1 <= j <= K-1)
    num_blocks: int = 1  # transformer blocks per expert (the paper: two)
    num_heads: int = 2
    dropout: float = 0.5
    loss: str = "softmax"  # "eq8": Eq. 8 literally; "bpr": log-sigmoid of the logit gap; "bce": official code;
    # "softmax": sampled softmax over num_train_negatives negatives of the target's domain (ABXI, gSASRec)
    # "full_softmax": the cross-entropy over every item of the target's domain (no sampling; |V^d| scores a position)
    num_train_negatives: int = 128  # loss="softmax": negatives a domain, for each sequence (softmax_negatives)
    # loss="softmax": how negatives are drawn from the target's domain: "uniform", or "popularity" (in proportion to
    # an item's count among the training targets plus one, with the logQ correction)
    softmax_sampling: str = "uniform"
    # loss="softmax": "sequence": N negatives a domain drawn for each sequence, its own items left out (ABXI's sampler
    # draws per position); "batch": N a domain drawn once per step and shared by every position (the default until
    # stop 35: its valid fell short of "sequence"'s at every seed, docs/results.md, results 20)
    softmax_negatives: str = "sequence"
    # loss="softmax" with softmax_negatives="sequence": whose negatives a position is scored against: "target" (the
    # N of its target's domain) or "all" (the N of every domain, D x N: ABXI's softmax holds 128 of each domain
    # whatever the target's; the scores are the same product, only the mask differs)
    softmax_negative_domains: str = "target"
    softmax_temperature: float = 0.75  # loss="softmax"/"full_softmax": logits are divided by it (ABXI's 0.75)
    # How per-position losses become one number, for every model and every term alike:
    # "sum": Eq. 8/9/12 (sum over a sequence's positions, mean over the batch's sequences);
    # "mean": mean over all positions of the batch; "domain_mean": mean per domain, then over domains;
    # "sequence_domain_mean": each sequence's mean per domain, averaged over sequences, summed over domains (ABXI's).
    loss_reduction: str = "sum"
    lambda_scale: str = "domains"  # "one": Eq. 12's lambda_d as is (they sum to 1)
    eta: float = 0.9  # harmonic factor of Eq. 18
    temperature: float = 1.0  # delta of Eq. 11 (fixed, as in the paper, unless learn_temperature)
    learn_temperature: bool = False
    learn_ntg_coefficients: bool = False  # alpha and beta of Eq. 11 (learnable in the paper; see DEVIATIONS)
    mim_temperature: float = 1.0  # divides rho (Eq. 17) inside InfoNCE; 1.0 is the paper
    causal_gates: bool = False  # True: the gate at position t reads positions <= t only (Eq. 3 reads all T)
    use_lc_ntg: bool = True  # False: uniform lambda, everything else identical ("w/o LC-NTG")
    # SC-MIM's InfoNCE term of Eq. 18 (off by default: see DEVIATIONS; the `paper` preset turns it on)
    use_sc_mim: bool = False
    use_acmoe: bool = True  # False: vanilla MMoE, no stop-gradient
    # True: one cross tower per target domain instead of Eq. 4's one h^cross; position t is read by the tower of its
    # next item's domain, which the task defines (Eq. 9 scores that domain's items) and a request names
    cross_tower_per_domain: bool = False
    # > 0: Eq. 18 plus this weight times the loss of the two towers summed (the "both" view served per domain by
    # `prediction_towers`), trained as well as chosen after training; 0: only chosen
    fused_loss_weight: float = 0.0
    mode: str = "syncrec"  # "sdsr": single-domain tasks only (negative-transfer reference)
    # Which tower serves each domain (SyNCRec trained on both tasks): "valid": after training and selection,
    # the domain's single tower or both towers summed, whichever beats the cross tower on valid by more (by the
    # margin below), else the cross tower; "cross": the cross tower for every domain (Eq. 19). Other models have
    # one tower: no effect.
    prediction_towers: str = "valid"
    # By how much "beats": the single tower's per-user valid NDCG@10 gain must exceed this many of its standard
    # errors (2: a gain that the particular valid users would explain about 2% of the time). The cross tower is
    # the paper's and the default; on a small valid split a noisy win must not replace it. 0: any gain.
    tower_choice_margin: float = 2.0
    # Which view of SyNCRec (trained on both tasks) the per-epoch valid figure reads, and so which epoch is selected,
    # when the rate decays and when training stops: "cross": the cross tower (Eq. 19); "both": the two towers summed,
    # the view `prediction_towers` serves in most domains (results 17, 24). Other models have one view: no effect.
    selection_view: str = "cross"
    architecture: str = "syncrec"  # or any name in model_keras/registry.py: "sasrec", "gru4rec", "bprmf", ...
    learning_rate: float = 1e-3
    weight_decay: float = 1e-3  # > 0: AdamW with this decoupled weight decay (ABXI's 1e-3); 0: Adam
    warmup_epochs: int = 5  # the learning rate rises linearly to learning_rate over these epochs (ABXI: 5)
    # > 0: the rate times lr_plateau_factor after this many epochs without a better valid NDCG@10 (0: never); ABXI's
    # 30 compressed with its stop after 61 to our 5 and 11 (see DEVIATIONS)
    lr_plateau_patience: int = 5
    lr_plateau_factor: float = 0.3162  # ABXI's decay (sqrt(0.1))
    batch_size: int = 128
    # Training batches hold histories of similar length: examples are sorted by length this many batches at a
    # time, and the batches shuffled (input_fn.make_dataset); trimming a batch to its longest history then
    # drops most padding: an ABE epoch takes 10 s instead of 18 s (r = 128). 0 or 1: plain shuffled batches.
    sort_window: int = 16
    epochs: int = 200  # the most epochs; training stops earlier when valid NDCG@10 stalls for `patience`
    # epochs without a better valid NDCG@10 before stopping (0: never stop early). With the decay after 5: the rate
    # falls after 5 and again after 10 flat epochs, and the run stops when one epoch at that rate has not helped
    patience: int = 11
    min_epochs: int = 0  # early stopping never ends a run before this epoch (a stall after a fast start)
    distribution: str = "none"  # "mirrored": the local devices; "multi_worker": the workers named by TF_CONFIG
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        # A whole number given for a float setting (`--set weight_decay=0`) is that float: one value, one spelling,
        # so the same settings always name the same run folder (experiments.runner.run_folder hashes them).
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, f.name, float(value))

    def setting_problems(self) -> list[str]:
        """Every problem with the user-set values (types and ranges), all at once."""
        problems = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                problems.append(f"{f.name} must be a whole number (got {value!r})")
            elif f.type == "float" and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            ):
                problems.append(f"{f.name} must be a finite number (got {value!r})")
            elif f.type == "bool" and not isinstance(value, bool):
                problems.append(f"{f.name} must be true or false (got {value!r})")
            elif f.type == "str" and not isinstance(value, str):
                problems.append(f"{f.name} must be a string (got {value!r})")
        if problems:  # ranges only make sense on values of the right type
            return problems
        problems += sequence_settings.problems({"max_len": self.max_len})
        ranges = {
            "embed_dim": (1, 4096),
            "num_experts": (1, 64),
            "num_blocks": (1, 64),
            "num_heads": (1, 64),
            "batch_size": (1, 65536),
            "sort_window": (0, 65536),
            "epochs": (1, 100_000),
            "patience": (0, 100_000),
            "num_train_negatives": (1, 100_000),
            "warmup_epochs": (0, 100_000),
            "lr_plateau_patience": (0, 100_000),
            "min_epochs": (0, 100_000),
            "seed": (0, 2**31 - 1),
        }
        for name, (low, high) in ranges.items():
            if not low <= getattr(self, name) <= high:
                problems.append(f"{name} must be in [{low}, {high}] (got {getattr(self, name)})")
        for name, choices in (
            ("loss", LOSSES),
            ("softmax_sampling", SOFTMAX_SAMPLING),
            ("softmax_negatives", SOFTMAX_NEGATIVES),
            ("softmax_negative_domains", SOFTMAX_NEGATIVE_DOMAINS),
            ("loss_reduction", REDUCTIONS),
            ("lambda_scale", LAMBDA_SCALES),
            ("mode", MODES),
            ("architecture", registry.names()),
            ("distribution", DISTRIBUTIONS),
            ("prediction_towers", PREDICTION_TOWERS),
            ("selection_view", SELECTION_VIEWS),
        ):
            if getattr(self, name) not in choices:
                problems.append(f"{name} must be one of {list(choices)} (got {getattr(self, name)!r})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.eta <= 1.0:
            problems.append(f"eta must be in [0, 1] (got {self.eta})")
        if not 0.0 < self.learning_rate <= 10.0:
            problems.append(f"learning_rate must be in (0, 10] (got {self.learning_rate})")
        if not 0.0 <= self.fused_loss_weight <= 100.0:
            problems.append(f"fused_loss_weight must be in [0, 100] (got {self.fused_loss_weight})")
        if not 0.0 <= self.weight_decay < 1.0:
            problems.append(f"weight_decay must be in [0, 1) (got {self.weight_decay})")
        if not 0.0 < self.lr_plateau_factor <= 1.0:
            problems.append(f"lr_plateau_factor must be in (0, 1] (got {self.lr_plateau_factor})")
        if not 0.0 <= self.tower_choice_margin <= 100.0:
            problems.append(f"tower_choice_margin must be in [0, 100] standard errors (got {self.tower_choice_margin})")
        for name in ("temperature", "mim_temperature", "softmax_temperature"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.softmax_negatives == "sequence" and self.softmax_sampling != "uniform":
            problems.append(
                "softmax_negatives=sequence draws uniformly: use it with softmax_sampling=uniform, or "
                "softmax_sampling=popularity with softmax_negatives=batch"
            )
        if self.softmax_negative_domains == "all" and self.softmax_negatives != "sequence":
            problems.append(
                "softmax_negative_domains=all scores each position against every domain's negatives of its sequence: "
                "use it with softmax_negatives=sequence"
            )
        if self.embed_dim % self.num_heads:
            problems.append(f"embed_dim {self.embed_dim} must be divisible by num_heads {self.num_heads}")
        if self.uses_stop_gradient and not 1 <= self.num_cross_experts <= self.num_experts - 1:
            problems.append(
                f"num_cross_experts j={self.num_cross_experts} must be in [1, K-1] = [1, {self.num_experts - 1}] "
                f"(K = num_experts = {self.num_experts}): ACMoE needs experts on both sides of the stop-gradient"
            )
        elif not 0 <= self.num_cross_experts <= self.num_experts:
            problems.append(
                f"num_cross_experts must be in [0, num_experts={self.num_experts}] (got {self.num_cross_experts})"
            )
        return problems

    @property
    def uses_stop_gradient(self) -> bool:
        """ACMoE's split of the experts applies (SyNCRec trained on both tasks)."""
        return self.architecture == "syncrec" and self.mode == "syncrec" and self.use_acmoe

    def validate_settings(self) -> "ModelConfig":
        """Check what a user sets (before any data is read); ValueError listing every problem."""
        problems = self.setting_problems()
        if problems:
            raise ValueError("invalid model settings: " + "; ".join(problems))
        return self

    def validate(self) -> "ModelConfig":
        """validate_settings, plus the sizes that come from the data."""
        problems = self.setting_problems()
        if not problems and (self.num_items < 3 or self.num_domains < 1):
            problems.append("num_items and num_domains must come from the vocabulary")
        if problems:
            raise ValueError("invalid model config: " + "; ".join(problems))
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "ModelConfig":
        """Build from a dict (YAML, --set flags, a preset); unknown keys are an error naming them."""
        values = expand_preset(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown model setting(s) {unknown}; known: {sorted(names)}")
        return cls(**dict(values))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named settings for the contexts that need other values than the defaults above; each value is written here
# only (`python -m pipeline settings` prints them). `--set preset=NAME` applies one; later --set flags win.
PRESETS: dict[str, dict[str, Any]] = {
    # What run-local, submit and schedule train (pipeline.config.DEFAULT_MODEL): the defaults above, the model the
    # experiments measure, with early stopping ending it (presets hold budgets only, never a weaker model).
    "pipeline": {"epochs": ModelConfig.epochs, "patience": ModelConfig.patience},
    # The experiments' converged runs. No run stops before epoch 50: GRU4Rec at seed 1 sat on a plateau after
    # epoch 2 and patience alone ended it at epoch 12, while every run that converged on ABE had its best epoch at
    # 43 or later.
    "experiments": {"epochs": ModelConfig.epochs, "patience": ModelConfig.patience, "min_epochs": 50},
    # §5.2.3 and §4: r = T = batch = 128, K = 4 (Amazon), two single-head blocks, j = 0.2K (at least 1),
    # Eq. 8/9/12 as written (per-position sums, lambda summing to one), delta fixed at 1, all three mechanisms.
    "paper": {
        "embed_dim": 128,
        "dropout": 0.2,  # the paper gives none: our default before the ABXI-level settings
        "weight_decay": 0.0,
        "warmup_epochs": 0,
        "lr_plateau_patience": 0,
        "max_len": 128,
        "batch_size": 128,
        "num_experts": 4,
        "num_cross_experts": 1,
        "num_blocks": 2,
        "num_heads": 1,
        "loss": "eq8",
        "loss_reduction": "sum",
        "lambda_scale": "one",
        "temperature": 1.0,
        "learn_temperature": False,
        "learn_ntg_coefficients": True,
        "causal_gates": False,
        "use_lc_ntg": True,
        "use_sc_mim": True,
        "use_acmoe": True,
        "prediction_towers": "cross",
        "selection_view": "cross",
    },
}


def expand_preset(values: Mapping[str, Any]) -> dict:
    """{"preset": name, **rest} -> the preset's settings overridden by the rest."""
    values = dict(values)
    name = values.pop("preset", None)
    if name is None:
        return values
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {sorted(PRESETS)}")
    return {**PRESETS[name], **values}


def parse_settings(pairs: list[str] | None) -> dict:
    """`key=value` strings (--set flags) -> dict; values parsed as JSON when they are (ints, floats,
    true/false), else kept as strings. `model.KEY` is the same as `KEY`. The one --set parser."""
    settings = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r} is not key=value (e.g. --set epochs=5)")
        key, value = pair.split("=", 1)
        try:
            settings[key.strip()] = json.loads(value)
        except ValueError:
            settings[key.strip()] = value
    return settings
