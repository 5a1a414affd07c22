"""The SyNCRec Keras model: wiring of the layers, the custom train_step and inference (Eq. 19)."""
from __future__ import annotations

import math

import model_keras
import tensorflow as tf

from model_keras import losses
from model_keras.config import ModelConfig
from model_keras.layers.embeddings import SharedEmbedding
from model_keras.layers.experts import AsymmetricMixtureOfExperts, Towers

model_keras.require_tf_keras(tf)

FEATURES = ("item", "target_item", "target_domain", "single_item", "single_target", "single_index")


class SyNCRec(tf.keras.Model):
    """Shared embedding -> ACMoE -> towers, trained on |D| single-domain tasks and one cross task.

    `domain_ranges[d-1] = (start, end)` is domain d's id range (start = its OOV id). Trainable
    alpha, beta and delta (Eq. 11) and W^H (Eq. 17) are model weights; lambda is a non-trainable
    variable updated every batch, so it is saved in checkpoints and survives resume.
    """

    def __init__(self, config: ModelConfig, domain_ranges: list[tuple[int, int]], domain_names: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        config.validate()
        self.config = config
        self.domain_ranges = [tuple(r) for r in domain_ranges]
        c = config
        self.embedding = SharedEmbedding(c.num_items, c.max_len, c.embed_dim, c.dropout, name="shared_embedding")
        asymmetric = c.use_acmoe and c.mode == "syncrec"
        self.acmoe = AsymmetricMixtureOfExperts(c.num_domains, c.num_experts, c.num_cross_experts, c.embed_dim, c.num_heads, c.num_blocks, c.dropout, asymmetric, name="acmoe")
        self.single_towers = Towers(c.num_domains, c.embed_dim, c.dropout, name="single_towers")
        self.cross_tower = Towers(1, c.embed_dim, c.dropout, name="cross_tower")
        self.mim_bilinear = self.add_weight(name="mim_bilinear", shape=[c.embed_dim, c.embed_dim], initializer=tf.keras.initializers.Identity())
        self.ntg_alpha = self.add_weight(name="ntg_alpha", shape=[], initializer=tf.keras.initializers.Constant(1.0))
        self.ntg_beta = self.add_weight(name="ntg_beta", shape=[], initializer=tf.keras.initializers.Constant(1.0))
        self.ntg_log_temperature = self.add_weight(name="ntg_log_temperature", shape=[], initializer=tf.keras.initializers.Constant(math.log(c.temperature)))
        self.ntg_lambda = self.add_weight(name="ntg_lambda", shape=[c.num_domains], initializer="zeros", trainable=False)
        starts = [0] + [start + 1 for start, _ in self.domain_ranges]
        counts = [0] + [end - start - 1 for start, end in self.domain_ranges]
        self.domain_start = tf.constant(starts, tf.int32)
        self.domain_count = tf.constant(counts, tf.int32)
        self.item_domain = tf.constant(self._item_domains(), tf.int32)
        self.domain_names = list(domain_names or [str(d) for d in range(1, c.num_domains + 1)])
        names = ["loss", "single_loss", "cross_loss", "mim_loss"]
        names += [f"phi/{d}" for d in self.domain_names] + [f"lambda/{d}" for d in self.domain_names]
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in names}

    def _item_domains(self) -> list[int]:
        """Domain id of every item id (0 for PAD and SOS); used to restrict scores to V^d."""
        table = [0] * self.config.num_items
        for d, (start, end) in enumerate(self.domain_ranges, start=1):
            table[start:end] = [d] * (end - start)
        return table

    # ------------------------------------------------------------------ forward
    def embed(self, ids, training=None):
        """E with PAD positions zeroed, so padding cannot leak into gates (Eq. 3)."""
        return self.embedding(ids, training=training) * tf.cast(ids > 0, tf.float32)[..., tf.newaxis]

    def encode(self, features, training=None):
        """(Y^single [B, D, T, r], Y^cross [B, T, r], gates [B, D+1, K])."""
        single_ids, cross_ids = features["single_item"], features["item"]
        f_single, f_cross, gates = self.acmoe(self.embed(single_ids, training), single_ids, self.embed(cross_ids, training), cross_ids, training=training)
        y_single = self.single_towers(f_single, training=training)
        y_cross = self.cross_tower(f_cross[:, tf.newaxis], training=training)[:, 0]
        return y_single, y_cross, gates

    def call(self, features, training=None):
        """Y^cross [B, T, r] (the representation used for prediction, Eq. 19)."""
        return self.encode(features, training)[1]

    def user_representation(self, item_ids, training=False):
        """(y_T)^cross [B, r]: the cross-domain representation of the last position (Eq. 19)."""
        f_cross = self.acmoe.cross_only(self.embed(item_ids, training), item_ids, training=training)
        return self.cross_tower(f_cross[:, tf.newaxis, -1:], training=training)[:, 0, -1]

    def single_user_representation(self, single_ids, domain, training=False):
        """(y_T^d)^single [B, r] from X^d of the given domain (used by the SDSR reference model)."""
        y_single, _, _ = self.encode({"single_item": single_ids, "item": single_ids[:, 0]}, training)
        return tf.gather(y_single[:, :, -1], domain - 1, batch_dims=1)

    def score(self, representation, candidates):
        """y . M(x) for candidate ids [B, C] -> [B, C]."""
        return tf.einsum("br,bcr->bc", representation, tf.gather(self.embedding.item_table, candidates))

    def score_domain(self, representation, domain):
        """Scores over all items [B, |V|], -inf outside the target domain's items (and its OOV id)."""
        logits = tf.matmul(representation, self.embedding.item_table, transpose_b=True)
        allowed = tf.equal(self.item_domain[tf.newaxis], domain[:, tf.newaxis])
        oov = tf.gather(self.domain_start, domain) - 1
        allowed = tf.logical_and(allowed, tf.not_equal(tf.range(self.config.num_items)[tf.newaxis], oov[:, tf.newaxis]))
        return tf.where(allowed, logits, tf.fill(tf.shape(logits), -float("inf")))

    # ------------------------------------------------------------------ losses
    def position_loss(self, representation, targets, domains):
        """Eq. 8/9 at every position: the target against one negative drawn from its domain."""
        negatives = losses.sample_negatives(domains, self.domain_start, self.domain_count)
        table = self.embedding.item_table
        return losses.pairwise_loss(tf.reduce_sum(representation * tf.gather(table, targets), -1),
                                    tf.reduce_sum(representation * tf.gather(table, negatives), -1), self.config.loss)

    def compute_losses(self, features, training=None, update_lambda=False) -> dict[str, tf.Tensor]:
        """Every term of Eq. 8-18 for one batch; also returns phi and the new lambda."""
        c = self.config
        y_single, y_cross, _ = self.encode(features, training)
        target, target_domain = features["target_item"], features["target_domain"]
        single_target = features["single_target"]
        domain_ids = tf.range(1, c.num_domains + 1, dtype=target_domain.dtype)
        single_domain = tf.broadcast_to(domain_ids[tf.newaxis, :, tf.newaxis], tf.shape(single_target)) * tf.cast(single_target > 0, target_domain.dtype)

        # Eq. 8: single-domain pairwise loss at every position of every X^d.
        l_single = self.position_loss(y_single, single_target, single_domain)
        single_mask = single_target > 0
        single_means, single_counts = losses.domain_means(l_single, single_domain, single_mask, c.num_domains)
        l_single_total = tf.math.divide_no_nan(tf.reduce_sum(single_means), tf.reduce_sum(tf.cast(single_counts > 0, tf.float32)))

        # Eq. 9: cross-domain pairwise loss at every position of X.
        l_cross = self.position_loss(y_cross, target, target_domain)
        cross_mask = target > 0
        cross_means, cross_counts = losses.domain_means(l_cross, target_domain, cross_mask, c.num_domains)
        present = cross_counts > 0

        # Eq. 10-12: NTG per domain from aligned single/cross losses, relative NTG, LC-NTG.
        l_single_rows = tf.gather(l_single, tf.maximum(target_domain - 1, 0), batch_dims=1)  # [B, T, T]
        l_single_aligned = tf.gather(l_single_rows, tf.maximum(features["single_index"], 0), batch_dims=2)
        phi = losses.negative_transfer_gap(l_single_aligned, l_cross, target_domain, cross_mask, c.num_domains)
        lam = losses.relative_ntg(self.ntg_lambda, phi, self.ntg_alpha, self.ntg_beta, tf.exp(self.ntg_log_temperature))
        if c.use_lc_ntg:
            l_cross_total = losses.lc_ntg_cross_loss(cross_means, lam, present)
        else:
            l_cross_total = tf.math.divide_no_nan(tf.reduce_sum(l_cross * tf.cast(cross_mask, tf.float32)), tf.reduce_sum(tf.cast(cross_mask, tf.float32)))

        # Eq. 16-17: SC-MIM between pooled single and cross views of each user and domain.
        y_single_aligned = tf.gather(tf.gather(y_single, tf.maximum(target_domain - 1, 0), batch_dims=1), tf.maximum(features["single_index"], 0), batch_dims=2)
        onehot = tf.one_hot(target_domain - 1, c.num_domains) * tf.cast(cross_mask, tf.float32)[..., tf.newaxis]  # [B, T, D]
        user_counts = tf.reduce_sum(onehot, axis=1)  # [B, D]
        pool = lambda y: tf.math.divide_no_nan(tf.einsum("btd,btr->bdr", onehot, y), user_counts[..., tf.newaxis])  # noqa: E731
        mim = losses.sc_mim_loss(pool(y_single_aligned), pool(y_cross), user_counts > 0, self.mim_bilinear, c.mim_temperature)
        l_mim_total = tf.math.divide_no_nan(tf.reduce_sum(mim * tf.cast(present, tf.float32)), tf.reduce_sum(tf.cast(present, tf.float32)))

        # Eq. 18.
        if c.mode == "sdsr":
            total = l_single_total
        else:
            total = c.eta * (l_single_total + l_cross_total)
            if c.use_sc_mim:
                total += (1.0 - c.eta) * l_mim_total
        if update_lambda:
            self.ntg_lambda.assign(tf.stop_gradient(lam))
        return {"loss": total, "single_loss": l_single_total, "cross_loss": l_cross_total, "mim_loss": l_mim_total, "phi": phi, "lambda": lam}

    # ------------------------------------------------------------------ keras hooks
    def _record(self, terms):
        for name in ("loss", "single_loss", "cross_loss", "mim_loss"):
            self.trackers[name].update_state(terms[name])
        for d, name in enumerate(self.domain_names):
            self.trackers[f"phi/{name}"].update_state(terms["phi"][d])
            self.trackers[f"lambda/{name}"].update_state(terms["lambda"][d])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        features = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            terms = self.compute_losses(features, training=True)
        variables = self.trainable_variables
        gradients = tape.gradient(terms["loss"], variables)
        self.optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
        self.ntg_lambda.assign(tf.stop_gradient(terms["lambda"]))
        return self._record(terms)

    def test_step(self, data):
        features = data[0] if isinstance(data, tuple) else data
        return self._record(self.compute_losses(features, training=False))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build_for(self, batch):
        """Create all weights by running one forward pass on a batch of features."""
        self.compute_losses({k: batch[k] for k in FEATURES}, training=False)
        self.user_representation(batch["item"])
        return self
