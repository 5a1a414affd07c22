"""Baselines on the same data path, trainer and evaluator as SyNCRec (§5.2.1).

SASRec (Kang & McAuley 2018): causal transformer on one sequence. GRU4Rec (Hidasi et al. 2016):
GRU on one sequence. BPR-MF (Rendle et al. 2009): a user vector (hashed user id) against item
vectors, no sequence. With `mode="syncrec"` (the default) the sequence models train on the
cross-domain sequence X (CDSR); with `mode="sdsr"` they train and predict on X^d only (SDSR, the
negative-transfer reference). MMoE is SyNCRec without stop-gradient, LC-NTG and SC-MIM
(`PRESETS["mmoe"]`). Every model is scored with the target's domain's items only (Eq. 19).
"""
from __future__ import annotations

import tensorflow as tf

from model_keras import losses
from model_keras.config import ModelConfig
from model_keras.layers.embeddings import SharedEmbedding
from model_keras.layers.transformer import TransformerExpert, causal_padding_mask
from model_keras.model import SyNCRec

PRESETS = {
    "syncrec": {},
    "mmoe": {"use_acmoe": False, "use_lc_ntg": False, "use_sc_mim": False},
}


class SequenceBaseline(tf.keras.Model):
    """Shared machinery: embedding, per-domain scoring, per-position loss, train/test steps."""

    def __init__(self, config: ModelConfig, domain_ranges, domain_names=None, **kwargs):
        super().__init__(**kwargs)
        config.validate()
        self.config, self.domain_ranges = config, [tuple(r) for r in domain_ranges]
        self.domain_names = list(domain_names or [])
        self.embedding = SharedEmbedding(config.num_items, config.max_len, config.embed_dim, config.dropout, name="shared_embedding")
        self.domain_start = tf.constant([0] + [s + 1 for s, _ in self.domain_ranges], tf.int32)
        self.domain_count = tf.constant([0] + [e - s - 1 for s, e in self.domain_ranges], tf.int32)
        self.item_domain = tf.constant(SyNCRec._item_domains(self), tf.int32)
        self.tracker = tf.keras.metrics.Mean(name="loss")

    score = SyNCRec.score
    score_domain = SyNCRec.score_domain
    position_loss = SyNCRec.position_loss

    def encode_sequence(self, ids, training=None):  # [N, T] -> [N, T, r]
        raise NotImplementedError

    def _inputs(self, features):
        """(ids, targets, target domains) of the sequences this model trains on."""
        if self.config.mode == "sdsr":
            single = features["single_target"]
            domains = tf.broadcast_to(tf.range(1, self.config.num_domains + 1)[tf.newaxis, :, tf.newaxis], tf.shape(single))
            flat = lambda x: tf.reshape(x, [-1, tf.shape(x)[-1]])  # noqa: E731
            return flat(features["single_item"]), flat(single), flat(domains * tf.cast(single > 0, tf.int32))
        return features["item"], features["target_item"], features["target_domain"]

    def compute_losses(self, features, training=None, update_lambda=False):
        ids, targets, domains = self._inputs(features)
        per_position = self.position_loss(self.encode_sequence(ids, training), targets, domains)
        mask = tf.cast(targets > 0, tf.float32)
        return {"loss": tf.math.divide_no_nan(tf.reduce_sum(per_position * mask), tf.reduce_sum(mask))}

    def user_representation(self, item_ids, training=False):
        return self.encode_sequence(item_ids, training)[:, -1]

    def single_user_representation(self, single_ids, domain, training=False):
        return self.user_representation(tf.gather(single_ids, domain - 1, batch_dims=1), training)

    def train_step(self, data):
        with tf.GradientTape() as tape:
            loss = self.compute_losses(data, training=True)["loss"]
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply_gradients([(g, v) for g, v in zip(grads, self.trainable_variables) if g is not None])
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}

    def test_step(self, data):
        self.tracker.update_state(self.compute_losses(data)["loss"])
        return {"loss": self.tracker.result()}

    @property
    def metrics(self):
        return [self.tracker]

    def build_for(self, batch):
        self.compute_losses({k: batch[k] for k in ("item", "target_item", "target_domain", "single_item", "single_target", "single_index")})
        self.user_representation(batch["item"])
        return self


class SASRec(SequenceBaseline):
    """E -> causal transformer blocks (the same block as SyNCRec's experts) -> y_t."""

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.encoder = TransformerExpert(config.embed_dim, config.num_heads, config.num_blocks, config.dropout, name="encoder")

    def encode_sequence(self, ids, training=None):
        e = self.embedding(ids, training=training) * tf.cast(ids > 0, tf.float32)[..., tf.newaxis]
        return self.encoder(e, causal_padding_mask(ids), training=training)


class GRU4Rec(SequenceBaseline):
    """E -> GRU (padding masked) -> y_t."""

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.gru = tf.keras.layers.GRU(config.embed_dim, return_sequences=True, dropout=config.dropout, name="gru")

    def encode_sequence(self, ids, training=None):
        return self.gru(self.embedding(ids, training=training), mask=ids > 0, training=training)


class BPRMF(SequenceBaseline):
    """Matrix factorisation with BPR: score = p_u . q_i; p_u from the hashed user id."""

    USER_BUCKETS = 1 << 20

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.users = tf.keras.layers.Embedding(self.USER_BUCKETS, config.embed_dim, embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02), name="users")
        self._current_users = None

    def _user_vectors(self, user_ids):
        return self.users(tf.strings.to_hash_bucket_fast(user_ids, self.USER_BUCKETS))

    def compute_losses(self, features, training=None, update_lambda=False):
        user = self._user_vectors(features["user_id"])[:, tf.newaxis]  # one vector for every train target
        targets, domains = features["target_item"], features["target_domain"]
        per_position = self.position_loss(tf.broadcast_to(user, tf.concat([tf.shape(targets), [self.config.embed_dim]], 0)), targets, domains)
        mask = tf.cast(targets > 0, tf.float32)
        return {"loss": tf.math.divide_no_nan(tf.reduce_sum(per_position * mask), tf.reduce_sum(mask))}

    def user_representation(self, item_ids, training=False):
        if self._current_users is None:
            raise ValueError("BPR-MF scores users, not histories: call with_users(user_ids) first")
        return self._user_vectors(self._current_users)

    def with_users(self, user_ids):
        self._current_users = user_ids
        return self

    def build_for(self, batch):
        self.embedding(batch["item"])  # creates M before the loss reads it
        self.compute_losses(batch)
        return self


ARCHITECTURES = {"syncrec": SyNCRec, "sasrec": SASRec, "gru4rec": GRU4Rec, "bprmf": BPRMF}
