"""Baselines on the same data path, base model, trainer and evaluator as SyNCRec (§5.2.1).

SASRec (Kang & McAuley 2018): causal transformer on one sequence. GRU4Rec (Hidasi et al. 2016):
GRU on one sequence. BPR-MF (Rendle et al. 2009): a user vector (hashed user id) against item
vectors, no sequence. With `mode="syncrec"` (the default) the sequence models train on the
cross-domain sequence X (CDSR); with `mode="sdsr"` they train and predict on X^d only (SDSR, the
negative-transfer reference). MMoE is SyNCRec without stop-gradient, LC-NTG and SC-MIM
(experiments.runner.VARIANTS). Every model is scored with the target domain's items only (Eq. 19)
and reduces its per-position losses with the same `loss_reduction` as SyNCRec.
"""

from __future__ import annotations

import tensorflow as tf

from model_keras.base import SequentialRecommender, trim_to_longest
from model_keras.layers.transformer import TransformerExpert, causal_padding_mask


class SequenceBaseline(SequentialRecommender):
    """A model of one sequence (X, or each X^d in SDSR mode): encode it, predict the next item at every step."""

    def encode_sequence(self, ids, training=None, last_only=False):
        """[N, T] ids -> [N, T, r] (or, where the encoder can, [N, 1, r] for the last position with `last_only`)."""
        raise NotImplementedError

    def _inputs(self, features):
        """(ids, targets, target domains, sequences per example) of what this model trains on."""
        if self.config.mode == "sdsr":
            flat = lambda x: tf.reshape(x, [-1, tf.shape(x)[-1]])  # noqa: E731
            single = features["single_target"]
            return flat(features["single_item"]), flat(single), flat(self.single_domains(single))
        return features["item"], features["target_item"], features["target_domain"]

    def compute_losses(self, features, training=None):
        ids, targets, domains = trim_to_longest(*self._inputs(features))
        per_step = self.position_loss(self.encode_sequence(ids, training), targets, domains)
        return {"loss": self.reduce(per_step, domains, targets > 0, tf.shape(features["item"])[0])}

    def user_representation(self, item_ids, training=False):
        (item_ids,) = trim_to_longest(item_ids)
        return self.encode_sequence(item_ids, training, last_only=True)[:, -1]

    def single_user_representation(self, single_ids, domain, training=False):
        return self.user_representation(tf.gather(single_ids, domain - 1, batch_dims=1), training)


class SASRec(SequenceBaseline):
    """E -> causal transformer blocks (the same block as SyNCRec's experts) -> y_t."""

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.encoder = TransformerExpert(
            config.embed_dim, config.num_heads, config.num_blocks, config.dropout, name="encoder"
        )

    def encode_sequence(self, ids, training=None, last_only=False):
        return self.encoder(self.embed(ids, training), causal_padding_mask(ids), training=training, last_only=last_only)


class GRU4Rec(SequenceBaseline):
    """E -> GRU (padding masked) -> y_t."""

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.gru = tf.keras.layers.GRU(config.embed_dim, return_sequences=True, dropout=config.dropout, name="gru")

    def encode_sequence(self, ids, training=None, last_only=False):
        return self.gru(self.embedding(ids, training=training), mask=ids > 0, training=training)


class BPRMF(SequentialRecommender):
    """Matrix factorisation with BPR: score = p_u . q_i; p_u from the hashed user id, one per train target."""

    USER_BUCKETS = 1 << 20
    not_servable_reason = (
        "BPR-MF scores a user by the id it was trained on, not by a history, so it cannot answer a request for a "
        "new history; serve a sequence model (syncrec, sasrec, gru4rec)"
    )

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.users = tf.keras.layers.Embedding(
            self.USER_BUCKETS,
            config.embed_dim,
            embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02),
            name="users",
        )

    def _user_vectors(self, user_ids):
        return self.users(tf.strings.to_hash_bucket_fast(user_ids, self.USER_BUCKETS))

    def compute_losses(self, features, training=None):
        targets, domains = features["target_item"], features["target_domain"]
        user = self._user_vectors(features["user_id"])[:, tf.newaxis]
        per_step = self.position_loss(
            tf.broadcast_to(user, tf.concat([tf.shape(targets), [self.config.embed_dim]], 0)), targets, domains
        )
        return {"loss": self.reduce(per_step, domains, targets > 0, tf.shape(targets)[0])}

    def user_representation(self, item_ids, training=False):
        raise ValueError(self.not_servable_reason)

    def representation_for(self, batch, view: str = "served"):
        """Every view is the user's own vector: BPR-MF has one tower and reads no history."""
        if view not in ("served", "cross", "single", "both"):
            raise ValueError(f"view must be 'served', 'cross', 'single' or 'both' (got {view!r})")
        return self._user_vectors(batch["user_id"])

    def build_for(self, batch):
        self.embedding(batch["item"])  # creates M before the loss reads it
        self.compute_losses(batch)
        return self

