"""Inference-only SavedModel with named signatures (the custom train_step is not exported:
retraining rebuilds the model from code + model_config.json and restores the checkpoint).

serving_default(history_items string [B, L], history_domains string [B, L],
                target_domain string [B], k int32 []) -> {"item_ids": string [B, k], "scores": float32 [B, k]}
    The raw ids users have, oldest first; "" is padding anywhere. Unknown items map to their
    domain's OOV id; an unknown domain name fails with INVALID_ARGUMENT naming the fix.
score_items(history_items, history_domains, target_domain, candidate_items string [B, C]) -> {"scores": [B, C]}
    Scores given candidates (the evaluator compares models through this, so models trained on
    different vocabularies are compared on the same raw items).
recommend_ids(history_items int32 [B, L], target_domain int32 [B], k) -> {"item_ids": int32, "scores"}
    The same with model ids (vocabulary.json); 0 = padding.
The SOS token is added here and the T most recent kept, exactly as the transform builds X.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

from schemas.vocabulary import SOS_ID


def left_pad_history(history: tf.Tensor, max_len: int) -> tf.Tensor:
    """[SOS] + the non-zero ids of each row, cut to the `max_len` most recent, left-padded with 0."""
    ragged = tf.ragged.boolean_mask(history, history > 0)
    sos = tf.fill([tf.shape(history)[0], 1], tf.constant(SOS_ID, history.dtype))
    ragged = tf.concat([tf.RaggedTensor.from_tensor(sos), ragged], axis=1)
    lengths = ragged.row_lengths()
    keep = tf.minimum(lengths, max_len)
    position = tf.range(max_len, dtype=lengths.dtype)[tf.newaxis, :]
    offset = (max_len - keep)[:, tf.newaxis]  # padding before the kept ids
    source = (lengths - keep)[:, tf.newaxis] + position - offset
    gathered = tf.gather(ragged.to_tensor(0), tf.maximum(source, 0), batch_dims=1)
    return tf.where(position >= offset, gathered, tf.zeros_like(gathered))


KEY_SEPARATOR = "\t"  # ids cannot contain control characters (raw-log validation)


class ServingModule(tf.Module):
    """Holds the trained model, the vocabulary tables and the serving signatures."""

    def __init__(self, model, max_len: int, vocabulary):
        super().__init__()
        self.model = model
        self.max_len = max_len
        keys, values = [], []
        domain_keys, domain_oov = [], []
        for d in vocabulary.domains:
            domain_keys.append(d.name)
            domain_oov.append(d.oov_id)
            for offset, item in enumerate(d.items):
                keys.append(d.name + KEY_SEPARATOR + item)
                values.append(d.start + 1 + offset)
        names = vocabulary.item_names()
        self.item_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(keys or [""], tf.string), tf.constant(values or [0], tf.int32)), default_value=-1)
        self.domain_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(domain_keys), tf.range(1, len(domain_keys) + 1, dtype=tf.int32)), default_value=0)
        self.domain_oov = tf.constant([0] + domain_oov, tf.int32)
        self.item_names = tf.constant(names)
        self.domain_list = ", ".join(domain_keys)

    def _domain_ids(self, domains):
        ids = self.domain_table.lookup(domains)
        tf.debugging.assert_positive(ids, message=f"unknown target/history domain; known domains: {self.domain_list}")
        return ids

    def _history_ids(self, history_items, history_domains):
        tf.debugging.assert_equal(tf.shape(history_items), tf.shape(history_domains), message="history_items and history_domains must have the same shape")
        present = tf.not_equal(history_items, "")
        domains = tf.where(present, history_domains, tf.fill(tf.shape(history_domains), "?"))
        domain_ids = self.domain_table.lookup(domains)
        tf.debugging.assert_positive(tf.where(present, domain_ids, tf.ones_like(domain_ids)), message=f"history_domains holds an unknown domain; known domains: {self.domain_list}")
        ids = self.item_table.lookup(tf.strings.join([history_domains, history_items], separator=KEY_SEPARATOR))
        ids = tf.where(ids < 0, tf.gather(self.domain_oov, domain_ids), ids)  # unknown item -> its domain's OOV
        return tf.where(present, ids, tf.zeros_like(ids))

    def _top_k(self, items, target_domain, k):
        tf.debugging.assert_positive(k, message="k must be >= 1")
        representation = self.model.user_representation(left_pad_history(items, self.max_len), training=False)
        scores = self.model.score_domain(representation, target_domain)
        return tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1]))

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.string, name="history_items"),
        tf.TensorSpec([None, None], tf.string, name="history_domains"),
        tf.TensorSpec([None], tf.string, name="target_domain"),
        tf.TensorSpec([], tf.int32, name="k"),
    ])
    def recommend(self, history_items, history_domains, target_domain, k):
        top = self._top_k(self._history_ids(history_items, history_domains), self._domain_ids(target_domain), k)
        return {"item_ids": tf.gather(self.item_names, top.indices), "scores": top.values}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.string, name="history_items"),
        tf.TensorSpec([None, None], tf.string, name="history_domains"),
        tf.TensorSpec([None], tf.string, name="target_domain"),
        tf.TensorSpec([None, None], tf.string, name="candidate_items"),
    ])
    def score_items(self, history_items, history_domains, target_domain, candidate_items):
        domain_ids = self._domain_ids(target_domain)
        domains = tf.broadcast_to(target_domain[:, tf.newaxis], tf.shape(candidate_items))
        candidates = self.item_table.lookup(tf.strings.join([domains, candidate_items], separator=KEY_SEPARATOR))
        candidates = tf.where(candidates < 0, tf.gather(self.domain_oov, domain_ids)[:, tf.newaxis], candidates)
        items = left_pad_history(self._history_ids(history_items, history_domains), self.max_len)
        return {"scores": self.model.score(self.model.user_representation(items, training=False), candidates)}

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="history_items"),
        tf.TensorSpec([None], tf.int32, name="target_domain"),
        tf.TensorSpec([], tf.int32, name="k"),
    ])
    def recommend_ids(self, history_items, target_domain, k):
        top = self._top_k(history_items, target_domain, k)
        return {"item_ids": tf.cast(top.indices, tf.int32), "scores": top.values}


def export_saved_model(model, max_len: int, vocabulary, path: str, extra_files: dict[str, dict] | None = None) -> str:
    """Write the SavedModel (three named signatures) and JSON side files into `path`."""
    module = ServingModule(model, max_len, vocabulary)
    signatures = {"serving_default": module.recommend, "score_items": module.score_items, "recommend_ids": module.recommend_ids}
    tf.saved_model.save(module, path, signatures=signatures)
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    for name, content in (extra_files or {}).items():
        with open(os.path.join(extra, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1)
    return path
