"""Warm start from an exported model, even when the vocabulary has grown since.

The exported SavedModel carries its model_config.json, vocabulary.json and checkpoint in
assets.extra/. We rebuild that model from code, load its weights and copy every weight whose
shape matches; item embedding rows are copied by raw item id, so items keep what they learned
and new items start fresh.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from schemas.vocabulary import Vocabulary
from model_keras.config import ModelConfig
from model_keras.base import SequentialRecommender
from schemas.features import MODEL_FEATURES, PER_DOMAIN_FEATURES


def dummy_batch(config: ModelConfig) -> dict:
    """All-PAD features of one example with the right shapes: enough to create every weight."""
    t, d = config.max_len, config.num_domains
    batch = {name: tf.zeros([1, d, t] if name in PER_DOMAIN_FEATURES else [1, t], tf.int32) for name in MODEL_FEATURES}
    batch["single_index"] = -tf.ones([1, t], tf.int32)
    batch["user_id"] = tf.constant([""])
    return batch


def load_exported(saved_model_dir: str) -> tuple[SequentialRecommender, Vocabulary]:
    """The model (rebuilt from code and its config) and vocabulary of an exported SavedModel."""
    extra = os.path.join(saved_model_dir, "assets.extra")
    with open(os.path.join(extra, "model_config.json"), encoding="utf-8") as handle:
        config = ModelConfig.from_dict(json.load(handle))
    vocabulary = Vocabulary.load(os.path.join(extra, "vocabulary.json"))
    from model_keras import registry

    model = registry.build(config, vocabulary)
    model.build_for(dummy_batch(config))
    model.load_weights(os.path.join(extra, "checkpoint", "weights")).expect_partial()
    return model, vocabulary


def model_weights(model: SequentialRecommender) -> list:
    """The model's own weights in build order, without its loss trackers' (model.weights lists those among the
    first: their number follows the loss terms and domains, so every weight after them would shift between a
    model trained with SC-MIM and one without, and pair with the wrong weight of the same shape)."""
    trackers = {id(v) for metric in model.metrics for v in metric.variables}
    return [w for w in model.weights if id(w) not in trackers]


def warm_start(model: SequentialRecommender, vocabulary: Vocabulary, saved_model_dir: str) -> dict:
    """Copy weights from the exported model into `model`; returns counts of what was copied."""
    old, old_vocab = load_exported(saved_model_dir)
    copied, skipped, rows = 0, 0, 0
    for new_var, old_var in zip(model_weights(model), model_weights(old)):
        if new_var is model.embedding.item_table:
            old_table, new_table = old_var.numpy(), new_var.numpy()
            for d in vocabulary.domains:
                if d.name not in old_vocab.domain_names:
                    continue
                for offset, item in enumerate(d.items):
                    old_id = old_vocab.item_id(d.name, item)
                    if old_id != old_vocab.domain(d.name).oov_id:
                        new_table[d.start + 1 + offset] = old_table[old_id]
                        rows += 1
                new_table[d.oov_id] = old_table[old_vocab.domain(d.name).oov_id]
            new_table[:2] = old_table[:2]
            new_var.assign(new_table)
            copied += 1
        elif new_var.shape == old_var.shape:
            new_var.assign(old_var)
            copied += 1
        else:
            skipped += 1
    return {"variables_copied": copied, "variables_skipped": skipped, "item_rows_copied": rows}
