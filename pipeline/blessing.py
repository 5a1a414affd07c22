"""Evaluator: per-domain metrics of the candidate, and blessing against the served model.

Both models are scored through their exported `score_items` signature on the raw item ids of the
current data (valid split, the same negatives per user), so a model trained on an older vocabulary
is compared fairly. A candidate is blessed when it is healthy (no non-finite score, no metric that
is not finite, not more than MAX_CONSTANT_USERS of users with every candidate scored the same) and,
for every domain, its NDCG@10 is no worse than the baseline's minus `tolerance`. With no baseline,
health alone decides. The reported metrics are the candidate's on the test split; blessing never
looks at test.
"""

from __future__ import annotations

import math
import os

import numpy as np
import tensorflow as tf

from model_keras.evaluation import METRICS, EvalProtocol, Scorer, evaluate
from model_keras.metrics import domain_rows
from schemas.vocabulary import SOS_ID, Vocabulary

BLESSING_METRIC = "NDCG@10"
MAX_CONSTANT_USERS = 0.01  # a trained model never scores all of a user's candidates the same


class SavedModelScorer(Scorer):
    """Scores candidates through a SavedModel's `score_items` signature (raw string ids)."""

    def __init__(self, saved_model_dir: str, vocabulary: Vocabulary):
        self.signature = tf.saved_model.load(saved_model_dir).signatures["score_items"]
        # A model pushed before the signatures were batched takes no history_length: it stays comparable
        # as a baseline (the first retrain after an upgrade blesses against it).
        self.takes_lengths = "history_length" in self.signature.structured_input_signature[1]
        names = vocabulary.item_names()
        names[0] = names[1] = ""  # PAD and SOS are not history items
        self.item_names = np.array(names, dtype=object)
        self.domain_names = np.array([""] + vocabulary.domain_names, dtype=object)

    @staticmethod
    def histories(batch) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, domain ids) [B, L] of each user's history as a client sends it, oldest first, 0 = padding.

        X holds the T most recent items; X^d of the label's domain can reach further back (its T most recent).
        A client sends the whole history, so the served model can build both: the label domain's items older
        than X's window are put before X. With them the SavedModel sees exactly the X and X^d the Keras model
        is evaluated on, whichever tower serves the domain."""
        items, domains = batch["item"].numpy(), batch["domain"].numpy()
        label_domain = batch["label_domain"].numpy()
        own = np.take_along_axis(batch["single_item"].numpy(), (label_domain - 1)[:, None, None], axis=1)[:, 0]
        older = []
        for row in range(len(items)):
            real = own[row][own[row] > SOS_ID]
            in_window = int(np.sum(domains[row] == label_domain[row]))
            older.append(real[: max(len(real) - in_window, 0)])
        width = max((len(o) for o in older), default=0)
        pad = np.zeros((len(items), width), dtype=items.dtype)
        for row, ids in enumerate(older):
            pad[row, width - len(ids) :] = ids
        older_domains = np.where(pad > 0, label_domain[:, None], 0)
        return np.concatenate([pad, items], axis=1), np.concatenate([older_domains, domains], axis=1)

    def score_candidates(self, batch, candidates):
        items, domains = self.histories(batch)
        lengths = {"history_length": tf.fill([len(items)], items.shape[1])} if self.takes_lengths else {}
        result = self.signature(
            history_items=tf.constant(self.item_names[items].astype(str)),
            history_domains=tf.constant(self.domain_names[domains].astype(str)),
            **lengths,
            target_domain=tf.constant(self.domain_names[batch["label_domain"].numpy()].astype(str)),
            candidate_items=tf.constant(self.item_names[candidates].astype(str)),
        )
        return result["scores"].numpy()


def health_problems(result: dict) -> list[str]:
    """Why an evaluation result shows a broken model (empty when it is healthy)."""
    problems = []
    health = result.get("health", {})
    if health.get("non_finite_scores"):
        problems.append(f"{health['non_finite_scores']} scores are NaN or infinite")
    users = max(result["all"]["users"], 1)
    if health.get("constant_score_users", 0) > MAX_CONSTANT_USERS * users:
        problems.append(
            f"{health['constant_score_users']} of {users} users got the same score for every candidate (degenerate)"
        )
    for domain, metrics in domain_rows(result).items():
        if any(not math.isfinite(metrics[m]) for m in METRICS):
            problems.append(f"{domain}: a metric is not finite")
    return problems


def bless(candidate: dict, baseline: dict | None, tolerance: float) -> tuple[bool, list[str]]:
    """(blessed, reasons): the candidate's health, then valid NDCG@10 per domain against the baseline."""
    broken = health_problems(candidate)
    if broken:
        return False, [f"candidate is broken: {p}" for p in broken]
    if baseline is None:
        return True, ["no model was pushed before and the candidate is healthy: blessed"]
    blessed, reasons = True, []
    for name, metrics in candidate["domains"].items():
        new, old = metrics[BLESSING_METRIC], baseline["domains"].get(name, {}).get(BLESSING_METRIC, 0.0)
        ok = new >= old - tolerance
        blessed &= ok
        reasons.append(
            f"{name}: {BLESSING_METRIC} {new:.4f} vs {old:.4f} (tolerance {tolerance}) -> {'ok' if ok else 'worse'}"
        )
    return blessed, reasons


def negative_transfer(towers: dict | None, margin: float) -> tuple[bool, list[str]]:
    """(refused, reasons) from the tower comparison on valid (training.json's prediction_towers): a domain whose
    single-domain tower beats the cross tower by more than `margin` standard errors suffers negative transfer.
    Served by its single tower, the tower choice fixed it (said so); served by the cross tower, refused."""
    refused, reasons = False, []
    for domain, t in (towers or {}).items():
        se = t.get("standard_error")
        if se is None or not (t["gain"] > 0 and t["gain"] > margin * se):
            continue
        what = f"{domain}: negative transfer (single tower {t['gain']:+.4f} ± {se:.4f} valid NDCG@10 over the cross tower)"
        if t["tower"] in ("single", "both"):
            served = "its single tower" if t["tower"] == "single" else "both towers summed, which beat it on valid"
            reasons.append(f"{what}: fixed, the domain is served by {served}")
        else:
            refused = True
            reasons.append(f"{what} while the cross tower serves it: not blessed (use prediction_towers=valid)")
    return refused, reasons


def compare_with(
    examples_dir: str, candidate_valid: dict, baseline_dir: str | None, tolerance: float, protocol: EvalProtocol
) -> dict:
    """Blessing of a candidate (its valid result) against the model in `baseline_dir`."""
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    baseline = (
        evaluate(SavedModelScorer(baseline_dir, vocabulary), examples_dir, "valid", vocabulary, protocol)
        if baseline_dir
        else None
    )
    blessed, reasons = bless(candidate_valid, baseline, tolerance)
    return {"baseline": baseline_dir, "baseline_valid": baseline, "blessed": blessed, "reasons": reasons}


def run_evaluator(
    examples_dir: str,
    saved_model_dir: str,
    baseline_dir: str | None,
    tolerance: float,
    protocol: EvalProtocol = EvalProtocol(),
) -> dict:
    """Valid and test metrics of the candidate SavedModel, and its blessing against `baseline_dir`.

    Returns {"test", "valid", "baseline", "baseline_valid", "blessed", "reasons"}."""
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    candidate = SavedModelScorer(saved_model_dir, vocabulary)
    valid = evaluate(candidate, examples_dir, "valid", vocabulary, protocol)
    test = evaluate(candidate, examples_dir, "test", vocabulary, protocol)
    return {"test": test, "valid": valid, **compare_with(examples_dir, valid, baseline_dir, tolerance, protocol)}
