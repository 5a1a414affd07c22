"""What every model here shares (TFRS `models/base.py`, RecBole `SequentialRecommender`).

The shared item table M and positions P, the domain id ranges, scoring restricted to a domain
(Eq. 19), the per-position pairwise loss (Eq. 8/9) with its reduction, and one train_step/test_step
around `compute_losses`. SyNCRec (model.py) and the baselines (baselines.py) only say how they
encode sequences and which loss terms they add.
"""

from __future__ import annotations

import tensorflow as tf

from model_keras import distribute, losses, require_tf_keras
from model_keras.config import ModelConfig
from model_keras.layers.embeddings import SharedEmbedding
from schemas.features import MODEL_FEATURES

require_tf_keras(tf)


def trim_to_longest(*tensors: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Drop the leading time steps that are padding in every row of the first tensor (ids [..., T]).

    Sequences are left-padded, so their real tokens are the last ones: keeping the last L columns,
    L = the longest real sequence, changes no output at a real position (PAD keys are masked and PAD
    embeddings are zero) and saves the work on columns that are padding everywhere.
    """
    ids = tensors[0]
    longest = tf.maximum(tf.reduce_max(tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=-1)), 1)
    return tuple(t[..., -longest:] for t in tensors)


class SequentialRecommender(tf.keras.Model):
    """Base of every model: shared embedding, domain tables, scoring, pairwise loss, training steps.

    `domain_ranges[d-1] = (start, end)` is domain d's id range (start = its OOV id). Subclasses write
    `compute_losses(features, training) -> {"loss": scalar, ...}` and `user_representation(item_ids)`;
    scalar terms they list in `loss_names()` and vector terms in `domain_terms()` (one value a domain)
    are reported each step (progress bar, TensorBoard).
    """

    def __init__(self, config: ModelConfig, domain_ranges, domain_names=None, **kwargs):
        super().__init__(**kwargs)
        config.validate()
        self.config = config
        self.domain_ranges = [tuple(r) for r in domain_ranges]
        self.domain_names = list(domain_names or [str(d) for d in range(1, config.num_domains + 1)])
        self.embedding = SharedEmbedding(
            config.num_items, config.max_len, config.embed_dim, config.dropout, name="shared_embedding"
        )
        self.domain_start = tf.constant([0] + [start + 1 for start, _ in self.domain_ranges], tf.int32)
        self.domain_count = tf.constant([0] + [end - start - 1 for start, end in self.domain_ranges], tf.int32)
        self.item_domain = tf.constant(self._item_domains(), tf.int32)
        if config.loss == "softmax" and config.softmax_sampling == "popularity":
            self.item_log_count = self.add_weight(
                name="item_log_count", shape=[config.num_items], initializer="zeros", trainable=False
            )
        names = list(self.loss_names()) + [f"{term}/{d}" for term in self.domain_terms() for d in self.domain_names]
        self.trackers = {name: tf.keras.metrics.Mean(name=name) for name in names}

    # ------------------------------------------------------------------ what subclasses define
    def loss_names(self) -> tuple[str, ...]:
        return ("loss",)

    def domain_terms(self) -> tuple[str, ...]:
        return ()

    def compute_losses(self, features, training=None) -> dict[str, tf.Tensor]:
        raise NotImplementedError

    # A model that cannot build a user from a history (BPR-MF scores user ids) says why here; export refuses it.
    not_servable_reason: str | None = None
    # SyNCRec's per-domain choice of tower (a variable); models with one tower have none.
    prediction_tower = None

    def user_representation(self, item_ids, training=False):
        """[B, r] from a cross-domain history (ids [B, T], left-padded, SOS first)."""
        raise NotImplementedError

    def cross_representation(self, item_ids, domain, stacked_experts=None):
        """[B, r] from a cross-domain history for target domain `domain` [B]: user_representation, unless the model
        reads the target domain (SyNCRec with `cross_tower_per_domain`)."""
        return self.user_representation(item_ids)

    def stacked_experts(self):
        """The inference-only stacked form of the model's experts for the SavedModel, or None (no experts)."""
        return None

    def single_user_representation(self, single_ids, domain, training=False):
        """[B, r] from the X^d of the given domain (single_ids [B, D, T]; the SDSR view)."""
        raise NotImplementedError

    def served_representation(self, item_ids, domain_ids, domain, stacked_experts=None):
        """[B, r] for target domain `domain` [B]: what the exported model serves (signatures.py), from X
        (`item_ids` [B, T]) or from X^d of that domain (`domain_ids` [B, T]). A model trained on single-domain
        sequences only (mode "sdsr") reads X^d; SyNCRec reads the tower it chose per domain (model.py)."""
        if self.config.mode == "sdsr":
            return self.user_representation(domain_ids)
        return self.user_representation(item_ids)

    def representation_for(self, batch, view: str = "served"):
        """[B, r] for an evaluation batch: what the model serves ("served"), or one view forced: from its
        history X ("cross"), from its X^d of the label's domain ("single"), or the two summed ("both")."""
        if view == "single":
            return self.single_user_representation(batch["single_item"], batch["label_domain"])
        if view == "cross":
            return self.cross_representation(batch["item"], batch["label_domain"])
        if view == "both":
            return self.representations_for(batch, ("both",))["both"]
        if view != "served":
            raise ValueError(f"view must be 'served', 'cross', 'single' or 'both' (got {view!r})")
        domain_ids = tf.gather(batch["single_item"], batch["label_domain"] - 1, batch_dims=1)
        return self.served_representation(batch["item"], domain_ids, batch["label_domain"])

    def representations_for(self, batch, views: tuple[str, ...]) -> dict:
        """{view: representation_for(batch, view)} with each encoder run once; the one definition of "both": the
        "cross" and "single" representations summed (computed once when the others are asked for too)."""
        done = {}

        def get(view):
            if view not in done:
                done[view] = get("cross") + get("single") if view == "both" else self.representation_for(batch, view)
            return done[view]

        return {view: get(view) for view in views}

    def after_train_step(self, terms: dict[str, tf.Tensor]) -> None:
        """State updated once per training batch (SyNCRec: lambda)."""

    # ------------------------------------------------------------------ shared machinery
    def _item_domains(self) -> list[int]:
        """Domain id of every item id (0 for PAD and SOS); used to restrict scores to V^d."""
        table = [0] * self.config.num_items
        for d, (start, end) in enumerate(self.domain_ranges, start=1):
            table[start:end] = [d] * (end - start)
        return table

    def embed(self, ids, training=None):
        """E with PAD positions zeroed, so padding cannot leak into gates (Eq. 3) or pooling."""
        return self.embedding(ids, training=training) * tf.cast(ids > 0, tf.float32)[..., tf.newaxis]

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

    def _training_step(self):
        """The optimizer's step (0 before compile): the key of every stateless negative draw, so a step draws the
        same negatives on every replica and again after a resume."""
        if getattr(self, "optimizer", None) is None:
            return tf.constant(0)
        return tf.cast(self.optimizer.iterations, tf.int32)

    def negatives(self, targets, domains, salt: int):
        """One negative per position from the target's domain, the same whichever replica computes it and
        however the batch was trimmed: uniform numbers are drawn for the global batch at full length T from
        a stateless generator keyed by (training step, seed, salt), and this replica takes its rows and steps."""
        rows = tf.shape(targets)[0]
        first, global_rows = distribute.replica_rows(rows)
        shape = tf.concat([[global_rows], tf.shape(targets)[1:-1], [self.config.max_len]], axis=0)
        step = self._training_step()
        uniform = tf.random.stateless_uniform(shape, seed=tf.stack([step, salt + 7919 * self.config.seed]))
        uniform = uniform[first : first + rows][..., self.config.max_len - tf.shape(targets)[-1] :]
        return losses.sample_negatives(domains, self.domain_start, self.domain_count, uniform)

    def shared_negatives(self, salt: int):
        """[D + 1, N] item ids: N negatives a domain, drawn from V^d once per step and shared by every position of
        the batch (row 0, for PAD targets, is PAD); the same on every replica (stateless, keyed by step, seed and
        salt). Uniformly, or with `softmax_sampling="popularity"` in proportion to each item's count among the
        training targets plus one (log_proposal gives the probabilities for the logQ correction)."""
        n = self.config.num_train_negatives
        step = self._training_step()
        seed = tf.stack([step, salt + 7919 * self.config.seed + 104729])
        if self.config.softmax_sampling == "popularity":
            return tf.random.stateless_categorical(self.proposal_logits(), n, seed=seed, dtype=tf.int32)
        uniform = tf.random.stateless_uniform([self.config.num_domains + 1, n], seed=seed)
        domains = tf.broadcast_to(tf.range(self.config.num_domains + 1)[:, tf.newaxis], [self.config.num_domains + 1, n])
        return losses.sample_negatives(domains, self.domain_start, self.domain_count, uniform)

    def sequence_negatives(self, rows, salt: int):
        """[rows, D + 1, N] item ids: N negatives a domain for each sequence of the batch, drawn uniformly from V^d
        (`softmax_negatives="sequence"`; row d = 0, for PAD targets, is PAD). ABXI draws them afresh for every
        position; one draw a sequence gives the same spread over the catalogue in a step (rows × N items a domain
        where "batch" sees N) with the same [positions × N] scores, for a gathered table row a sequence's negative
        (+14% an epoch for SyNCRec on ABE). Stateless like `negatives`: the same on every replica, this replica
        taking its rows."""
        n, domains = self.config.num_train_negatives, self.config.num_domains + 1
        first, global_rows = distribute.replica_rows(rows)
        step = self._training_step()
        seed = tf.stack([step, salt + 7919 * self.config.seed + 224737])
        uniform = tf.random.stateless_uniform(tf.stack([global_rows, domains, n]), seed=seed)[first : first + rows]
        ids = tf.broadcast_to(tf.range(domains)[tf.newaxis, :, tf.newaxis], tf.shape(uniform))
        return losses.sample_negatives(ids, self.domain_start, self.domain_count, uniform)

    def sequence_softmax_loss(self, representation, targets, domains, salt: int):
        """The sampled softmax with `sequence_negatives`: each position against its sequence's N negatives of the
        target's domain, leaving out the target and every item the sequence has as a target (the user's own
        items, which ABXI's sampler excludes too: a negative the user did choose is a false one). Only the D real
        domains' negatives are scored: a PAD position's loss is 0 (every negative left out) whatever it is scored
        against, so the PAD row of the draw would be a third of the largest product on two domains for nothing (3%
        of an ABE epoch on 2 cores, results 21). With `softmax_negative_domains="all"` a position is scored against
        every domain's N negatives of its sequence, as ABXI's softmax holds N of each domain: the same product, all
        of it kept."""
        n, num_domains = self.config.num_train_negatives, self.config.num_domains
        rows = tf.shape(targets)[0]
        negatives = self.sequence_negatives(rows, salt)[:, 1:]  # [B, D, N]: the PAD row dropped
        flat_negatives = tf.reshape(negatives, [rows, num_domains * n])
        table = self.embedding.item_table
        width = tf.shape(representation)[-1]
        reps = tf.reshape(representation, [rows, -1, width])  # [B, M, r]: every position of the row's sequence(s)
        logits = tf.einsum("bmr,bkr->bmk", reps, tf.gather(table, flat_negatives))  # [B, M, D*N]
        logits = tf.reshape(logits, [rows, -1, num_domains, n])
        flat_targets = tf.cast(tf.reshape(targets, [rows, -1]), negatives.dtype)  # [B, M]
        flat_domains = tf.reshape(domains, [rows, -1])
        pos = tf.reduce_sum(representation * tf.gather(table, targets), -1)
        # a negative the row has as a target (the position's own target among them) is left out
        own = tf.reduce_any(tf.equal(flat_negatives[:, :, tf.newaxis], flat_targets[:, tf.newaxis, :]), axis=-1)
        if self.config.softmax_negative_domains == "all":  # every domain's N: the product as it is, [B, M, D*N]
            scored = num_domains * n
            logits = tf.reshape(logits, [rows, -1, scored])
            valid = tf.logical_not(own)[:, tf.newaxis, :]  # [B, 1, D*N]
        else:  # the target's domain's N: its row of the product, [B, M, N]
            scored = n
            row = tf.maximum(flat_domains - 1, 0)  # the target's domain's row (PAD positions: any, left out below)
            logits = tf.gather(logits, row, batch_dims=2)
            valid = tf.logical_not(tf.gather(tf.reshape(own, [rows, num_domains, n]), row, batch_dims=1))
        valid = tf.logical_and(valid, (flat_domains > 0)[..., tf.newaxis])
        shape = tf.concat([tf.shape(targets), [scored]], 0)
        return losses.sampled_softmax_loss(
            pos, tf.reshape(logits, shape), tf.reshape(valid, shape), self.config.softmax_temperature
        )

    # ------------------------------------------------------------------ popularity proposal (softmax_sampling)
    def set_item_counts(self, counts) -> None:
        """Each item's count among the training targets [|V|] (train.run_fn, before training): the popularity
        proposal of the sampled softmax. Saved with the weights, so a resumed run draws from the same one."""
        self.item_log_count.assign(tf.math.log(tf.cast(counts, tf.float32) + 1.0))

    def proposal_logits(self):
        """[D + 1, |V|] unnormalised log-probabilities of drawing each item as a negative of domain d: log(count + 1)
        over V^d (its OOV id excluded), -inf elsewhere; row 0 (PAD targets) draws PAD."""
        ids = tf.range(self.config.num_items)
        oov = self.domain_start - 1  # [D + 1]; row 0's value (-1) matches no id
        rows = tf.range(self.config.num_domains + 1)[:, tf.newaxis]
        allowed = tf.equal(self.item_domain[tf.newaxis], rows) & tf.not_equal(ids[tf.newaxis], oov[:, tf.newaxis])
        allowed &= rows > 0
        logits = tf.where(allowed, self.item_log_count[tf.newaxis], -float("inf"))
        return tf.where((rows == 0) & (ids[tf.newaxis] == 0), 0.0, logits)

    def log_proposal(self, items):
        """log q(item) under the popularity proposal of the item's own domain (items of any shape)."""
        log_q = tf.math.log_softmax(self.proposal_logits(), axis=-1)  # each row normalised over its domain
        return tf.gather_nd(log_q, tf.stack([tf.gather(self.item_domain, items), items], axis=-1))

    def position_loss(self, representation, targets, domains, salt: int = 0):
        """Eq. 8/9 at every position: the target against one negative drawn from its domain; with
        loss="softmax", against `num_train_negatives` negatives of its domain (sampled softmax)."""
        table = self.embedding.item_table
        if self.config.loss == "full_softmax":
            ranges = [(start + 1, end) for start, end in self.domain_ranges]  # OOV (each range's first id) left out
            return losses.full_softmax_loss(
                representation, table, targets, domains, ranges, self.config.softmax_temperature
            )
        if self.config.loss == "softmax" and self.config.softmax_negatives == "sequence":
            return self.sequence_softmax_loss(representation, targets, domains, salt)
        if self.config.loss == "softmax":
            negatives = self.shared_negatives(salt)  # [D+1, N]
            flat = tf.reshape(negatives, [-1])
            rows = tf.reshape(representation, [-1, tf.shape(representation)[-1]])  # one 2-D matmul for all positions
            logits = tf.matmul(rows, tf.gather(table, flat), transpose_b=True)  # [P, (D+1)N]
            logits = tf.reshape(logits, [-1, self.config.num_domains + 1, self.config.num_train_negatives])
            logits = tf.gather(logits, tf.reshape(domains, [-1]), batch_dims=1)  # [P, N]: the target's domain only
            logits = tf.reshape(logits, tf.concat([tf.shape(targets), [self.config.num_train_negatives]], 0))
            drawn = tf.gather(negatives, domains)  # [..., N]
            valid = tf.not_equal(drawn, targets[..., tf.newaxis])
            pos = tf.reduce_sum(representation * tf.gather(table, targets), -1)
            log_q = {}
            if self.config.softmax_sampling == "popularity":
                log_q = {"pos_log_q": self.log_proposal(targets), "neg_log_q": self.log_proposal(drawn)}
            return losses.sampled_softmax_loss(pos, logits, valid, self.config.softmax_temperature, **log_q)
        negatives = self.negatives(targets, domains, salt)
        return losses.pairwise_loss(
            tf.reduce_sum(representation * tf.gather(table, targets), -1),
            tf.reduce_sum(representation * tf.gather(table, negatives), -1),
            self.config.loss,
        )

    def reduce(self, values, domains, mask, num_sequences, weights=None):
        """`losses.reduce` with this model's `loss_reduction` (the same for every model and term)."""
        return losses.reduce(
            values, domains, mask, self.config.num_domains, self.config.loss_reduction, num_sequences, weights
        )

    def single_domains(self, single_target):
        """Domain id of each position of X^d ([B, D, T]; 0 where the target is PAD)."""
        ids = tf.range(1, self.config.num_domains + 1, dtype=single_target.dtype)[tf.newaxis, :, tf.newaxis]
        return tf.broadcast_to(ids, tf.shape(single_target)) * tf.cast(single_target > 0, single_target.dtype)

    # ------------------------------------------------------------------ keras hooks
    def _record(self, terms):
        # Each replica's loss terms are its share of the global value (normalised by global sums), and
        # Keras averages a metric over replicas: so each share is reported times the number of replicas.
        replicas = float(distribute.num_replicas())
        for name in self.loss_names():
            self.trackers[name].update_state(terms[name] * replicas)
        for term in self.domain_terms():
            for d, name in enumerate(self.domain_names):
                self.trackers[f"{term}/{name}"].update_state(terms[term][d])
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        features = data[0] if isinstance(data, tuple) else data
        with tf.GradientTape() as tape:
            terms = self.compute_losses(features, training=True)
            # Fails the step (and model.fit) at once when the loss is NaN or infinite: a diverged run
            # must stop, not go on to be selected, blessed and pushed (train.NON_FINITE_LOSS).
            loss = tf.debugging.check_numerics(terms["loss"], "training loss is not finite")
        variables = self.trainable_variables
        gradients = tape.gradient(loss, variables)
        self.optimizer.apply_gradients([(g, v) for g, v in zip(gradients, variables) if g is not None])
        self.after_train_step(terms)
        return self._record(terms)

    def test_step(self, data):
        features = data[0] if isinstance(data, tuple) else data
        return self._record(self.compute_losses(features, training=False))

    @property
    def metrics(self):
        return list(self.trackers.values())

    def build_for(self, batch):
        """Create every weight by running the losses and the inference path once on a batch."""
        self.compute_losses({k: batch[k] for k in (*MODEL_FEATURES, "user_id") if k in batch}, training=False)
        domain = batch["label_domain"] if "label_domain" in batch else tf.ones([tf.shape(batch["item"])[0]], tf.int32)
        self.cross_representation(batch["item"], domain)
        return self
