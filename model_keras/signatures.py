"""Inference-only SavedModel with named signatures (the custom train_step is not exported:
retraining rebuilds the model from code + model_config.json and restores the checkpoint).

serving_default(history_items int32 [B, L], target_domain int32 [B], k int32 []) ->
    {"item_ids": int32 [B, k], "scores": float32 [B, k]}
History ids are model ids (vocabulary.json), oldest first, 0 = padding anywhere; the SOS token
is added here and the T most recent kept, exactly as the transform builds X.
"""
from __future__ import annotations

import json
import os

import model_keras  # noqa: F401
import tensorflow as tf

from components.vocabulary import SOS_ID


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


class ServingModule(tf.Module):
    """Holds the trained model and exposes top-k recommendation per target domain."""

    def __init__(self, model, max_len: int):
        super().__init__()
        self.model = model
        self.max_len = max_len

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.int32, name="history_items"),
        tf.TensorSpec([None], tf.int32, name="target_domain"),
        tf.TensorSpec([], tf.int32, name="k"),
    ])
    def recommend(self, history_items, target_domain, k):
        items = left_pad_history(history_items, self.max_len)
        representation = self.model.user_representation(items, training=False)
        scores = self.model.score_domain(representation, target_domain)
        top = tf.math.top_k(scores, k=tf.minimum(k, tf.shape(scores)[1]))
        return {"item_ids": tf.cast(top.indices, tf.int32), "scores": top.values}


def export_saved_model(model, max_len: int, path: str, extra_files: dict[str, dict] | None = None) -> str:
    """Write the SavedModel (signature `serving_default`) and JSON side files into `path`."""
    module = ServingModule(model, max_len)
    tf.saved_model.save(module, path, signatures={"serving_default": module.recommend})
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    for name, content in (extra_files or {}).items():
        with open(os.path.join(extra, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1)
    return path
