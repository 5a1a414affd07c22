"""Inference-only SavedModel with named signatures (the custom train_step is not exported:
retraining rebuilds the model from code + model_config.json and restores the checkpoint).

serving_default(history_items string [B, L], history_domains string [B, L], history_length int32 [B],
                target_domain string [B], k int32 [B]) -> {"item_ids": string [B, K], "scores": float32 [B, K]}
    The raw ids users have, oldest first: row b's history is its first history_length[b] entries ("" among
    them is padding too); whatever lies beyond is ignored. Unknown items map to their domain's OOV id; an
    unknown domain name is INVALID_ARGUMENT naming the known ones.
score_items(history_items, history_domains, history_length, target_domain, candidate_items string [B, C])
    -> {"scores": [B, C]}. Scores given candidates (the evaluator compares models through this, so models
    trained on different vocabularies are compared on the same raw items).
recommend_ids(history_items int32 [B, L], history_length int32 [B], target_domain int32 [B], k int32 [B])
    -> {"item_ids": int32 [B, K], "scores"}. The same with model ids (vocabulary.json); 0 = padding.
Row b gets k'_b = min(k[b], its target domain's item count) answers; K is the largest k'_b of the batch and a
row's places past its own k'_b hold "" (id 0) with score -inf. With `exclude_history` (the default) items
already in a user's history are not recommended: they score -inf and sort last.

Why every input and output has the batch as dimension 0, and why `history_length`: TF Serving's
`--enable_batching` merges concurrent requests along dimension 0, refuses rank-0 inputs (a failed warm-up
fails the load), and with `pad_variable_length_inputs` pads every other dimension at its end with the
tensor's first element. Padded history places lie past history_length and are ignored; padded candidate
columns are scored and dropped by the client (it keeps its first C); k is per row, so no request changes
another's answer. Merged or alone, a request gets the same answer (serving/prediction_server.py applies
these rules when batching, and tests check it).
When every row of a batch asks for the same domain (single requests always do), only that domain's
contiguous id range of the item table is scored, not the whole vocabulary (exact, stock TF ops). The
SavedModel holds a second, scoring-only copy of the item table (see ServingModule), and SyNCRec's experts
run as one stacked computation (model_keras/layers/stacked_experts.py).
The SOS token is added here and the T most recent kept, exactly as the transform builds X (and X^d, for
a domain that a SyNCRec model serves from its single-domain tower: model.SyNCRec.prediction_tower).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from schemas.vocabulary import SOS_ID

KEY_SEPARATOR = "\t"  # ids cannot contain control characters (raw-log validation)
WARMUP_FILE = "tf_serving_warmup_requests"  # TF Serving replays assets.extra/<this> when it loads a version


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
    """Holds the trained model, the vocabulary tables and the serving signatures."""

    def __init__(self, model, max_len: int, vocabulary, exclude_history: bool = True):
        super().__init__()
        self.model, self.max_len, self.exclude_history = model, max_len, exclude_history
        keys, values = [], []
        for d in vocabulary.domains:
            keys += [d.name + KEY_SEPARATOR + item for item in d.items]
            values += range(d.start + 1, d.end)
        self.item_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(keys or [""], tf.string), tf.constant(list(values) or [0], tf.int32)
            ),
            default_value=-1,
        )
        self.domain_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(vocabulary.domain_names), tf.range(1, vocabulary.num_domains + 1, dtype=tf.int32)
            ),
            default_value=0,
        )
        self.domain_oov = tf.constant([0] + [d.oov_id for d in vocabulary.domains], tf.int32)
        self.first_item = tf.constant([0] + [d.start + 1 for d in vocabulary.domains], tf.int32)  # OOV excluded
        self.domain_size = tf.constant([0] + [d.end - d.start - 1 for d in vocabulary.domains], tf.int32)
        self.item_names = tf.constant(vocabulary.item_names())
        self.num_items, self.num_domains = vocabulary.num_items, vocabulary.num_domains
        # A copy of M that is only ever read densely. The embedding lookups gather rows of the model's M,
        # which switches that variable to copy-on-read: every dense read of it then copies the whole
        # table (27 ms for 1M x 64). Scoring reads this copy instead: a domain's rows are a zero-copy slice.
        self.scoring_table = tf.Variable(model.embedding.item_table.read_value(), trainable=False, name="scoring_table")
        self.domain_list = ", ".join(vocabulary.domain_names)
        # SyNCRec's K experts as one stacked computation: a request's encoder pass is dispatch-bound.
        self.stacked_experts = model.stacked_experts()

    def _user_representation(self, history, target_domain):
        """What the model serves for each row's target domain (base.served_representation), from the whole
        history (ids, 0 = padding anywhere): X is its T most recent ids, X^d the T most recent of the target
        domain, both with SOS first, exactly as the transform builds them. The stacked experts when there
        are some."""
        in_domain = tf.equal(tf.gather(self.model.item_domain, history), target_domain[:, tf.newaxis])
        items = left_pad_history(history, self.max_len)
        domain_items = left_pad_history(tf.where(in_domain, history, tf.zeros_like(history)), self.max_len)
        if self.stacked_experts is None:
            return self.model.served_representation(items, domain_items, target_domain)
        return self.model.served_representation(items, domain_items, target_domain, self.stacked_experts)

    # ------------------------------------------------------------------ checks (INVALID_ARGUMENT naming the problem)
    # Each check is a control dependency of the value it guards, so no op that would fail on a bad value
    # (and report an obscure error first) runs before the check.
    @staticmethod
    def _checked(value, *checks):
        with tf.control_dependencies(checks):
            return tf.identity(value)

    def _domain_ids(self, domains):
        ids = self.domain_table.lookup(domains)
        return self._checked(
            ids, tf.debugging.assert_positive(ids, message=f"unknown target_domain; known domains: {self.domain_list}")
        )

    def _same_rows(self, name, tensor, history):
        return self._checked(
            tensor,
            tf.debugging.assert_equal(
                tf.shape(tensor)[0],
                tf.shape(history)[0],
                message=f"{name} must have one row per history row (history_items has a different batch size)",
            ),
        )

    def _within_length(self, history, history_length):
        """True where a history place is inside its row's history_length (checked to [0, L])."""
        width = tf.shape(history, out_type=history_length.dtype)[1]
        message = "history_length must be in [0, width of history_items] for every row"
        history_length = self._checked(
            history_length,
            tf.debugging.assert_greater_equal(history_length, 0, message=message),
            tf.debugging.assert_less_equal(history_length, width, message=message),
        )
        return tf.range(width)[tf.newaxis, :] < history_length[:, tf.newaxis]

    def _rows(self, history, **tensors):
        """Each named input checked to have one row per history row, in the order given."""
        return [self._same_rows(name, tensor, history) for name, tensor in tensors.items()]

    def _history_ids(self, history_items, history_domains, history_length):
        history_domains = self._checked(
            history_domains,
            tf.debugging.assert_equal(
                tf.shape(history_items),
                tf.shape(history_domains),
                message="history_items and history_domains must have the same shape",
            ),
        )
        present = tf.not_equal(history_items, "") & self._within_length(history_items, history_length)
        domains = tf.where(present, history_domains, tf.fill(tf.shape(history_domains), "?"))
        domain_ids = self.domain_table.lookup(domains)
        domain_ids = self._checked(
            domain_ids,
            tf.debugging.assert_positive(
                tf.where(present, domain_ids, tf.ones_like(domain_ids)),
                message=f"history_domains holds an unknown domain; known domains: {self.domain_list}",
            ),
        )
        ids = self.item_table.lookup(tf.strings.join([history_domains, history_items], separator=KEY_SEPARATOR))
        ids = tf.where(ids < 0, tf.gather(self.domain_oov, domain_ids), ids)  # unknown item -> its domain's OOV
        return tf.where(present, ids, tf.zeros_like(ids))

    # ------------------------------------------------------------------ top-k
    def _exclude(self, scores, history, offset):
        """Scores of the history's items (column = id - offset) set to the lowest finite float: below every real
        score, above the -inf of other domains' items, so that the history ranks the same whether a batch scores
        one domain's slice or the whole table (_top_k reports them as -inf)."""
        if not self.exclude_history:
            return scores
        columns = history - offset
        inside = (history > 0) & (columns >= 0) & (columns < tf.shape(scores)[1])
        rows = tf.broadcast_to(tf.range(tf.shape(history)[0])[:, tf.newaxis], tf.shape(history))
        index = tf.stack([tf.boolean_mask(rows, inside), tf.boolean_mask(columns, inside)], axis=1)
        return tf.tensor_scatter_nd_update(scores, index, tf.fill([tf.shape(index)[0]], scores.dtype.min))

    def _top_k(self, history, target_domain, k):
        """(indices, scores) [B, K]: row b's k'_b best, then id 0 with -inf up to K = max k'_b."""
        k = self._checked(k, tf.debugging.assert_positive(k, message="k must be >= 1"))
        representation = self._user_representation(history, target_domain)
        k_row = tf.minimum(k, tf.gather(self.domain_size, target_domain))
        kept = tf.range(tf.reduce_max(tf.concat([k_row, [0]], 0)))[tf.newaxis, :] < k_row[:, tf.newaxis]
        indices, scores = self._top_k_rows(representation, history, target_domain, tf.shape(kept)[1])
        unused = tf.fill(tf.shape(scores), -float("inf"))
        return tf.where(kept, indices, tf.zeros_like(indices)), tf.where(kept & (scores > scores.dtype.min), scores, unused)

    def _top_k_rows(self, representation, history, target_domain, k):
        """The k best ids of each row's target domain with their scores."""

        def one_domain():  # the domain's contiguous rows of M only: |V^d| x r instead of |V| x r
            start = self.first_item[target_domain[0]]
            rows = tf.slice(self.scoring_table, [start, 0], [self.domain_size[target_domain[0]], -1])
            top = tf.math.top_k(self._exclude(tf.matmul(representation, rows, transpose_b=True), history, start), k=k)
            return top.indices + start, top.values

        def mixed_domains():
            logits = tf.matmul(representation, self.scoring_table, transpose_b=True)
            allowed = tf.logical_and(
                tf.equal(self.model.item_domain[tf.newaxis], target_domain[:, tf.newaxis]),
                tf.range(self.num_items)[tf.newaxis] >= tf.gather(self.first_item, target_domain)[:, tf.newaxis],
            )
            scores = self._exclude(tf.where(allowed, logits, tf.fill(tf.shape(logits), -float("inf"))), history, 0)
            top = tf.math.top_k(scores, k=k)
            return top.indices, top.values

        return tf.cond(tf.reduce_all(tf.equal(target_domain, target_domain[0])), one_domain, mixed_domains)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history_items"),
            tf.TensorSpec([None, None], tf.string, name="history_domains"),
            tf.TensorSpec([None], tf.int32, name="history_length"),
            tf.TensorSpec([None], tf.string, name="target_domain"),
            tf.TensorSpec([None], tf.int32, name="k"),
        ]
    )
    def recommend(self, history_items, history_domains, history_length, target_domain, k):
        """serving_default: top-k raw item ids of the target domain for raw-id histories."""
        history_length, target_domain, k = self._rows(
            history_items, history_length=history_length, target_domain=target_domain, k=k
        )
        indices, scores = self._top_k(
            self._history_ids(history_items, history_domains, history_length), self._domain_ids(target_domain), k
        )
        names = tf.where(indices > 0, tf.gather(self.item_names, indices), tf.fill(tf.shape(indices), ""))
        return {"item_ids": names, "scores": scores}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="history_items"),
            tf.TensorSpec([None, None], tf.string, name="history_domains"),
            tf.TensorSpec([None], tf.int32, name="history_length"),
            tf.TensorSpec([None], tf.string, name="target_domain"),
            tf.TensorSpec([None, None], tf.string, name="candidate_items"),
        ]
    )
    def score_items(self, history_items, history_domains, history_length, target_domain, candidate_items):
        """Scores of the given raw candidate ids for raw-id histories."""
        history_length, target_domain, candidate_items = self._rows(
            history_items, history_length=history_length, target_domain=target_domain, candidate_items=candidate_items
        )
        domain_ids = self._domain_ids(target_domain)
        domains = tf.broadcast_to(target_domain[:, tf.newaxis], tf.shape(candidate_items))
        candidates = self.item_table.lookup(tf.strings.join([domains, candidate_items], separator=KEY_SEPARATOR))
        candidates = tf.where(candidates < 0, tf.gather(self.domain_oov, domain_ids)[:, tf.newaxis], candidates)
        history = self._history_ids(history_items, history_domains, history_length)
        return {"scores": self.model.score(self._user_representation(history, domain_ids), candidates)}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.int32, name="history_items"),
            tf.TensorSpec([None], tf.int32, name="history_length"),
            tf.TensorSpec([None], tf.int32, name="target_domain"),
            tf.TensorSpec([None], tf.int32, name="k"),
        ]
    )
    def recommend_ids(self, history_items, history_length, target_domain, k):
        """Top-k with vocabulary ids in and out."""
        history_length, target_domain, k = self._rows(
            history_items, history_length=history_length, target_domain=target_domain, k=k
        )
        items, domains = (
            f"history_items must be item ids in [0, {self.num_items})",
            f"target_domain must be a domain id in [1, {self.num_domains}]",
        )
        history_items = self._checked(
            history_items,
            tf.debugging.assert_greater_equal(history_items, 0, message=items),
            tf.debugging.assert_less(history_items, self.num_items, message=items),
        )
        target_domain = self._checked(
            target_domain,
            tf.debugging.assert_greater_equal(target_domain, 1, message=domains),
            tf.debugging.assert_less_equal(target_domain, self.num_domains, message=domains),
        )
        history_items = tf.where(
            self._within_length(history_items, history_length), history_items, tf.zeros_like(history_items)
        )
        indices, scores = self._top_k(history_items, target_domain, k)
        return {"item_ids": tf.cast(indices, tf.int32), "scores": scores}


def warmup_requests(vocabulary, model_name: str = "syncrec") -> list:
    """A few real PredictionLog records for every signature (TF Serving replays them on load, through its
    batching session when batching is on: every input has the batch as dimension 0)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    logs = []
    domains = vocabulary.domains
    for d in domains[:3]:
        history = [(e.items[i % len(e.items)], e.name) for i, e in enumerate(domains) if e.items][:5] or [("", "")]
        inputs = {
            "serving_default": {
                "history_items": [[h[0] for h in history]],
                "history_domains": [[h[1] for h in history]],
                "history_length": [len(history)],
                "target_domain": [d.name],
                "k": [10],
            },
            "score_items": {
                "history_items": [[h[0] for h in history]],
                "history_domains": [[h[1] for h in history]],
                "history_length": [len(history)],
                "target_domain": [d.name],
                "candidate_items": [list(d.items[:3]) or [""]],
            },
            "recommend_ids": {
                "history_items": [[d.start + 1 if d.items else 0]],
                "history_length": [1],
                "target_domain": [d.domain_id],
                "k": [10],
            },
        }
        for signature, values in inputs.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in values.items():
                dtype = tf.int32 if signature == "recommend_ids" or key in ("k", "history_length") else tf.string
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
            logs.append(prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request)))
    return logs


def export_saved_model(
    model, max_len: int, vocabulary, path: str, extra_files: dict[str, dict] | None = None, exclude_history: bool = True
) -> str:
    """Write the SavedModel (three named signatures), the warmup requests and JSON side files into `path`."""
    if model.not_servable_reason:
        raise ValueError(f"{model.config.architecture} cannot be exported for serving: {model.not_servable_reason}")
    module = ServingModule(model, max_len, vocabulary, exclude_history)
    signatures = {
        "serving_default": module.recommend,
        "score_items": module.score_items,
        "recommend_ids": module.recommend_ids,
    }
    tf.saved_model.save(module, path, signatures=signatures)
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(extra, WARMUP_FILE)) as writer:
        for log in warmup_requests(vocabulary):
            writer.write(log.SerializeToString())
    for name, content in (extra_files or {}).items():
        with open(os.path.join(extra, name), "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=1)
    return path
