"""Evaluator: per-domain metrics of the candidate, and blessing against the last pushed model.

Both models are scored through their exported `score_items` signature on the raw item ids of the
current data (valid split, the same 99 negatives per user), so a model trained on an older
vocabulary is compared fairly. Blessed when, for every domain, the candidate's NDCG@10 is no
worse than the baseline's minus `tolerance`; always blessed when nothing was pushed before.
The reported metrics are the candidate's on the test split; blessing never looks at test.
"""
from __future__ import annotations

import os

import numpy as np

import tensorflow as tf

from schemas.vocabulary import Vocabulary
from model_keras.evaluation import EvalProtocol, Scorer, evaluate

BLESSING_METRIC = "NDCG@10"


class SavedModelScorer(Scorer):
    """Scores candidates through a SavedModel's `score_items` signature (raw string ids)."""

    def __init__(self, saved_model_dir: str, vocabulary: Vocabulary):
        self.signature = tf.saved_model.load(saved_model_dir).signatures["score_items"]
        names = vocabulary.item_names()
        names[0] = names[1] = ""  # PAD and SOS are not history items
        self.item_names = np.array(names, dtype=object)
        self.domain_names = np.array([""] + vocabulary.domain_names, dtype=object)

    def score_candidates(self, batch, candidates):
        items = batch["item"].numpy()
        result = self.signature(
            history_items=tf.constant(self.item_names[items].astype(str)),
            history_domains=tf.constant(self.domain_names[batch["domain"].numpy()].astype(str)),
            target_domain=tf.constant(self.domain_names[batch["label_domain"].numpy()].astype(str)),
            candidate_items=tf.constant(self.item_names[candidates].astype(str)),
        )
        return result["scores"].numpy()


def latest_version(serving_root: str, model_name: str) -> str | None:
    """Path of the highest numeric version under serving_root/model_name, if any."""
    folder = os.path.join(serving_root, model_name)
    if not os.path.isdir(folder):
        return None
    versions = [int(v) for v in os.listdir(folder) if v.isdigit()]
    return os.path.join(folder, str(max(versions))) if versions else None


def bless(candidate: dict, baseline: dict | None, tolerance: float) -> tuple[bool, list[str]]:
    """(blessed, one reason per domain) comparing valid NDCG@10 per domain."""
    if baseline is None:
        return True, ["no model was pushed before: blessed"]
    blessed, reasons = True, []
    for name, metrics in candidate["domains"].items():
        new, old = metrics[BLESSING_METRIC], baseline["domains"].get(name, {}).get(BLESSING_METRIC, 0.0)
        ok = new >= old - tolerance
        blessed &= ok
        reasons.append(f"{name}: {BLESSING_METRIC} {new:.4f} vs {old:.4f} (tolerance {tolerance}) -> {'ok' if ok else 'worse'}")
    return blessed, reasons


def run_evaluator(examples_dir: str, saved_model_dir: str, serving_root: str, model_name: str, tolerance: float,
                  protocol: EvalProtocol = EvalProtocol()) -> dict:
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    candidate = SavedModelScorer(saved_model_dir, vocabulary)
    valid = evaluate(candidate, examples_dir, "valid", vocabulary, protocol)
    test = evaluate(candidate, examples_dir, "test", vocabulary, protocol)
    baseline_dir = latest_version(serving_root, model_name) if serving_root else None
    baseline = evaluate(SavedModelScorer(baseline_dir, vocabulary), examples_dir, "valid", vocabulary, protocol) if baseline_dir else None
    blessed, reasons = bless(valid, baseline, tolerance)
    return {"test": test, "valid": valid, "baseline": baseline_dir, "baseline_valid": baseline, "blessed": blessed, "reasons": reasons}
