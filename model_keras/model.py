"""The SyNCRec Keras model: ACMoE wiring, the loss terms of Eq. 8-18, and inference (Eq. 19)."""

from __future__ import annotations

import math
from typing import NamedTuple

import tensorflow as tf

from model_keras import distribute, losses
from model_keras.base import SequentialRecommender, trim_to_longest
from model_keras.config import ModelConfig
from model_keras.layers.experts import AsymmetricMixtureOfExperts, Towers


# What `prediction_tower` holds per domain: the tower whose representation serves it (BOTH: the cross and the single
# tower's representations summed, so each item's score is the sum of the two towers' scores).
TOWERS = ("cross", "single", "both")
CROSS, SINGLE, BOTH = range(len(TOWERS))


class Encoded(NamedTuple):
    """One batch through ACMoE and the towers, trimmed to its longest real sequences.

    y_single [B, D, L1, r] for X^d and y_cross [B, L2, r] for X, with the matching ids, targets,
    target domains and the alignment `single_index` (shifted into the trimmed X^d).
    """

    y_single: tf.Tensor
    y_cross: tf.Tensor
    single_target: tf.Tensor
    target: tf.Tensor
    target_domain: tf.Tensor
    single_index: tf.Tensor
    gates: tuple


class SyNCRec(SequentialRecommender):
    """Shared embedding -> ACMoE -> towers, trained on |D| single-domain tasks and one cross task.

    Trainable alpha, beta (Eq. 11) and W^H (Eq. 17) are model weights; delta is a fixed weight
    unless `learn_temperature`; lambda is a non-trainable variable updated every batch, so it is
    saved in checkpoints and survives resume. `prediction_tower` (one value a domain: 0 = the cross
    tower, Eq. 19; 1 = the domain's single tower; 2 = both, summed) says which tower serves each domain; it is set after
    training (train.choose_prediction_towers) and travels with the weights into the SavedModel.
    """

    def __init__(self, config: ModelConfig, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        c = config
        self.acmoe = AsymmetricMixtureOfExperts(
            c.num_domains,
            c.num_experts,
            c.num_cross_experts,
            c.embed_dim,
            c.num_heads,
            c.num_blocks,
            c.dropout,
            c.uses_stop_gradient,
            max_len=c.max_len,
            causal_gates=c.causal_gates,
            name="acmoe",
        )
        self.single_towers = Towers(c.num_domains, c.embed_dim, c.dropout, name="single_towers")
        # h^cross: one tower (Eq. 4), or one per target domain (`cross_tower_per_domain`): position t is read by the
        # tower of the domain its next item belongs to, which training and serving both know (ABXI's task guidance)
        self.cross_tower = Towers(c.num_domains if c.cross_tower_per_domain else 1, c.embed_dim, c.dropout, name="cross_tower")
        self.mim_bilinear = self.add_weight(
            name="mim_bilinear", shape=[c.embed_dim, c.embed_dim], initializer=tf.keras.initializers.Identity()
        )
        constant = tf.keras.initializers.Constant
        self.ntg_alpha = self.add_weight(
            name="ntg_alpha", shape=[], initializer=constant(1.0), trainable=c.learn_ntg_coefficients
        )
        self.ntg_beta = self.add_weight(
            name="ntg_beta", shape=[], initializer=constant(1.0), trainable=c.learn_ntg_coefficients
        )
        self.ntg_log_temperature = self.add_weight(
            name="ntg_log_temperature",
            shape=[],
            initializer=constant(math.log(c.temperature)),
            trainable=c.learn_temperature,
        )
        # lambda is computed from global sums, so every replica holds the same value: the first one's is kept.
        self.ntg_lambda = self.add_weight(
            name="ntg_lambda",
            shape=[c.num_domains],
            initializer="zeros",
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )
        self.prediction_tower = self.add_weight(
            name="prediction_tower",
            shape=[c.num_domains],
            dtype=tf.int32,
            initializer="ones" if c.mode == "sdsr" else "zeros",  # sdsr trains the single towers only
            trainable=False,
        )

    def loss_names(self):
        # SC-MIM's term exists only where Eq. 18 uses it: off (the default), no step computes the InfoNCE.
        return (
            ("loss", "single_loss", "cross_loss")
            + (("mim_loss",) if self.config.use_sc_mim else ())
            + (("fused_loss",) if self.config.fused_loss_weight > 0 else ())
        )

    def domain_terms(self):
        return ("phi", "lambda")

    def stacked_experts(self):
        from model_keras.layers.stacked_experts import StackedExperts

        return StackedExperts(self.acmoe)

    # ------------------------------------------------------------------ forward
    def encode(self, features, training=None) -> Encoded:
        """X and every X^d through ACMoE and the towers (Eq. 2-4), each trimmed to its longest sequence."""
        length = tf.shape(features["single_item"])[-1]
        single_ids, single_target = trim_to_longest(features["single_item"], features["single_target"])
        cross_ids, target, target_domain, single_index = trim_to_longest(
            features["item"], features["target_item"], features["target_domain"], features["single_index"]
        )
        single_index = single_index - (length - tf.shape(single_ids)[-1])  # positions in the trimmed X^d
        f_single, g_single = self.acmoe.single(self.embed(single_ids, training), single_ids, training)
        f_cross, g_cross = self.acmoe.cross(self.embed(cross_ids, training), cross_ids, training)
        y_single = self.single_towers(f_single, training=training)
        y_cross = self._cross_towers(f_cross, target_domain, training)
        return Encoded(y_single, y_cross, single_target, target, target_domain, single_index, (g_single, g_cross))

    def _cross_towers(self, f_cross, target_domain, training=None):
        """y^cross [B, L, r]: f^cross through the cross tower, or through the tower of each position's target domain
        (every domain's tower runs on every position and each keeps its own; padding reads domain 1's)."""
        if not self.config.cross_tower_per_domain:
            return self.cross_tower(f_cross[:, tf.newaxis], training=training)[:, 0]
        shape = tf.shape(f_cross)
        every = self.cross_tower(
            tf.broadcast_to(f_cross[:, tf.newaxis], [shape[0], self.config.num_domains, shape[1], shape[2]]),
            training=training,
        )  # [B, D, L, r]
        return tf.gather(tf.transpose(every, [0, 2, 1, 3]), tf.maximum(target_domain - 1, 0), batch_dims=2)

    def call(self, features, training=None):
        """Y^cross [B, L, r] (the representation used for prediction, Eq. 19)."""
        return self.encode(features, training).y_cross

    def user_representation(self, item_ids, training=False, stacked_experts=None, domain=None):
        """(y_T)^cross [B, r]: the cross-domain representation of the last position (Eq. 19), for target domain
        `domain` [B] (needed, and only read, with `cross_tower_per_domain`).

        `stacked_experts` (serving, inference only): a StackedExperts copy of the experts, which gives
        the same value with one op per step for all K experts instead of one per expert."""
        (item_ids,) = trim_to_longest(item_ids)
        embedded = self.embed(item_ids, training)
        if stacked_experts is None:
            f_cross = self.acmoe.cross_only(embedded, item_ids, training=training)
        else:
            f_cross = stacked_experts.cross_last(embedded, item_ids)
        if self.config.cross_tower_per_domain:
            if domain is None:
                raise ValueError("cross_tower_per_domain: the cross representation needs the target domain")
            return self.cross_tower.for_rows(f_cross[:, -1], domain - 1)
        return self.cross_tower(f_cross[:, tf.newaxis, -1:], training=training)[:, 0, -1]

    def cross_representation(self, item_ids, domain, stacked_experts=None):
        return self.user_representation(item_ids, stacked_experts=stacked_experts, domain=domain)

    def single_user_representation(self, single_ids, domain, training=False):
        """(y_T^d)^single [B, r] from X^d of the given domain (used by the SDSR reference model)."""
        (single_ids,) = trim_to_longest(single_ids)
        f_single, _ = self.acmoe.single(self.embed(single_ids, training), single_ids, training)
        y_single = self.single_towers(f_single[:, :, -1:], training=training)[:, :, -1]
        return tf.gather(y_single, domain - 1, batch_dims=1)

    def domain_user_representation(self, domain_ids, domain, stacked_experts=None):
        """(y_T^d)^single [B, r] from one X^d per row (`domain_ids` [B, T], domain `domain` [B]): the
        single-domain path of one domain only (single_user_representation runs every domain's)."""
        (domain_ids,) = trim_to_longest(domain_ids)
        embedded = self.embed(domain_ids, training=False)
        if stacked_experts is None:
            f_single = self.acmoe.single_last(embedded, domain_ids, domain - 1)
        else:
            f_single = stacked_experts.single_last(embedded, domain_ids, domain - 1)
        return self.single_towers.for_rows(f_single[:, -1], domain - 1)

    def served_representation(self, item_ids, domain_ids, domain, stacked_experts=None):
        """Each row from the tower `prediction_tower` names for its target domain (TOWERS: the cross tower, the
        domain's single tower, or both summed); a tower that no row of the batch uses is not computed (a single
        request runs the paths its domain needs)."""
        tower = tf.gather(self.prediction_tower, domain - 1)  # [B]

        def zeros():
            return tf.zeros([tf.shape(item_ids)[0], self.config.embed_dim])

        cross = tf.cond(
            tf.reduce_all(tf.equal(tower, SINGLE)),
            zeros,
            lambda: self.user_representation(item_ids, stacked_experts=stacked_experts, domain=domain),
        )
        by_domain = tf.cond(
            tf.reduce_any(tf.not_equal(tower, CROSS)),
            lambda: self.domain_user_representation(domain_ids, domain, stacked_experts),
            zeros,
        )
        tower = tower[:, tf.newaxis]
        return tf.where(tf.equal(tower, CROSS), cross, tf.where(tf.equal(tower, SINGLE), by_domain, cross + by_domain))

    # ------------------------------------------------------------------ losses
    def _aligned(self, per_domain_values, enc: Encoded):
        """Values of X^{target_domain[t]} at the step predicting the same item as step t of X ([B, L2, ...])."""
        shape = tf.shape(enc.target_domain)
        rows = tf.broadcast_to(tf.range(shape[0])[:, tf.newaxis], shape)
        index = tf.stack([rows, tf.maximum(enc.target_domain - 1, 0), tf.maximum(enc.single_index, 0)], axis=-1)
        return tf.gather_nd(per_domain_values, index)

    def single_task(self, enc: Encoded, batch):
        """Eq. 8 at every step of every X^d: (per-step losses [B, D, L1], L_single)."""
        domains = self.single_domains(enc.single_target)
        per_step = self.position_loss(enc.y_single, enc.single_target, domains, salt=1)
        return per_step, self.reduce(per_step, domains, enc.single_target > 0, batch)

    def negative_transfer(self, single_steps, cross_steps, enc: Encoded, batch):
        """Eq. 10-11: phi per domain from aligned single/cross losses, and the new lambda."""
        mask = enc.target > 0
        phi = losses.negative_transfer_gap(
            self._aligned(single_steps, enc),
            cross_steps,
            enc.target_domain,
            mask,
            self.config.num_domains,
            self.config.loss_reduction,
            batch,
        )
        lam = losses.relative_ntg(self.ntg_lambda, phi, self.ntg_alpha, self.ntg_beta, tf.exp(self.ntg_log_temperature))
        return phi, lam

    def cross_task(self, cross_steps, lam, enc: Encoded, batch):
        """Eq. 9 with LC-NTG's per-domain weights (Eq. 12), or uniform weights without it."""
        c = self.config
        weights = losses.lc_ntg_weights(
            lam if c.use_lc_ntg else tf.fill([c.num_domains], 1.0 / c.num_domains), c.lambda_scale
        )
        return self.reduce(cross_steps, enc.target_domain, enc.target > 0, batch, weights)

    def sc_mim(self, enc: Encoded, batch):
        """Eq. 16-17: InfoNCE between each user's pooled single and cross views of each domain."""
        c = self.config
        onehot = (
            tf.one_hot(enc.target_domain - 1, c.num_domains) * tf.cast(enc.target > 0, tf.float32)[..., tf.newaxis]
        )  # [B, L2, D]
        counts = tf.reduce_sum(onehot, axis=1)  # [B, D]

        def pool(y):  # mean over the user's domain-d steps
            return tf.math.divide_no_nan(tf.einsum("btd,btr->bdr", onehot, y), counts[..., tf.newaxis])

        present = counts > 0
        # The other users of the *global* batch are the negatives (Eq. 16): gathered from every replica.
        single, cross = pool(self._aligned(enc.y_single, enc)), pool(enc.y_cross)
        first, _ = distribute.replica_rows(batch)
        every_single = distribute.gather_replicas(single)
        every_present = tf.cast(distribute.gather_replicas(tf.cast(present, tf.float32)), tf.bool)
        per_user = losses.sc_mim_loss(
            every_single, distribute.gather_replicas(cross), every_present, self.mim_bilinear, c.mim_temperature
        )
        per_user = per_user[:, first : first + batch]  # this replica's users: each user's loss is counted once
        per_user = tf.transpose(per_user)  # [B, D]: the sequence first, as every reduction reads it
        domains = tf.broadcast_to(tf.range(1, c.num_domains + 1)[tf.newaxis], tf.shape(per_user))
        return self.reduce(per_user, domains, present, batch)

    def compute_losses(self, features, training=None) -> dict[str, tf.Tensor]:
        """Every term of Eq. 8-18 for one batch; also phi and the new lambda (Eq. 10-11)."""
        c = self.config
        enc = self.encode(features, training)
        batch = tf.shape(enc.target)[0]
        single_steps, l_single = self.single_task(enc, batch)
        cross_steps = self.position_loss(enc.y_cross, enc.target, enc.target_domain, salt=2)
        phi, lam = self.negative_transfer(single_steps, cross_steps, enc, batch)
        l_cross = self.cross_task(cross_steps, lam, enc, batch)
        terms = {"single_loss": l_single, "cross_loss": l_cross, "phi": phi, "lambda": lam}
        total = c.eta * (l_single + l_cross)  # Eq. 18
        if c.use_sc_mim:
            terms["mim_loss"] = self.sc_mim(enc, batch)
            total += (1.0 - c.eta) * terms["mim_loss"]
        if c.fused_loss_weight > 0:
            terms["fused_loss"] = self.fused_task(enc, batch)
            total += c.fused_loss_weight * terms["fused_loss"]
        return {"loss": l_single if c.mode == "sdsr" else total, **terms}

    def fused_task(self, enc: Encoded, batch):
        """The next item of X scored from both towers summed, y^cross_t + y^single of its domain at the same step (what
        `prediction_towers` serves as "both"). Its gradient reaches the cross experts through y^cross and the single
        experts through y^single, so ACMoE's split (Eq. 2, 4) holds."""
        fused = enc.y_cross + self._aligned(enc.y_single, enc)
        steps = self.position_loss(fused, enc.target, enc.target_domain, salt=3)
        return self.reduce(steps, enc.target_domain, enc.target > 0, batch)

    def after_train_step(self, terms):
        """Keep the batch's lambda (Eq. 11) for the next batch."""
        self.ntg_lambda.assign(tf.stop_gradient(terms["lambda"]))
