"""ACMoE: gates (Eq. 3), the asymmetric cooperative mixture (Eq. 2, 4) and towers h^d, h^cross."""

import tensorflow as tf

from model_keras.layers.fast import FastDropout

from model_keras.layers.transformer import TransformerExpert, causal_padding_mask


@tf.keras.utils.register_keras_serializable("syncrec")
class Towers(tf.keras.layers.Layer):
    """N independent towers h^n(x) = LN_n(x + W2_n GELU(W1_n x + b1_n) + b2_n), batched with einsum.

    Call: x [B, N, T, r] -> [B, N, T, r]; tower n is applied to slice n (a domain, or the cross task).
    """

    def __init__(self, num_towers: int, embed_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_towers, self.embed_dim, self.dropout_rate = num_towers, embed_dim, dropout
        self.dropout = FastDropout(dropout)

    def build(self, input_shape):
        n, r = self.num_towers, self.embed_dim
        self.w1 = self.add_weight(name="w1", shape=[n, r, r], initializer="glorot_uniform")
        self.b1 = self.add_weight(name="b1", shape=[n, r], initializer="zeros")
        self.w2 = self.add_weight(name="w2", shape=[n, r, r], initializer="glorot_uniform")
        self.b2 = self.add_weight(name="b2", shape=[n, r], initializer="zeros")
        self.gamma = self.add_weight(name="ln_gamma", shape=[n, r], initializer="ones")
        self.beta = self.add_weight(name="ln_beta", shape=[n, r], initializer="zeros")
        super().build(input_shape)

    def call(self, x, training=None):
        h = tf.nn.gelu(tf.einsum("bntr,nrs->bnts", x, self.w1) + self.b1[:, tf.newaxis, :])
        h = tf.einsum("bntr,nrs->bnts", self.dropout(h, training=training), self.w2) + self.b2[:, tf.newaxis, :]
        y = x + h
        mean, var = tf.nn.moments(y, axes=[-1], keepdims=True)
        return (y - mean) * tf.math.rsqrt(var + 1e-6) * self.gamma[:, tf.newaxis, :] + self.beta[:, tf.newaxis, :]

    def for_rows(self, x, index):
        """Inference: tower index[b] applied to x[b] ([B, r] -> [B, r]). Every tower runs on every row (N small
        r x r products) and each row keeps its own: the tower is defined once, in `call`."""
        every = tf.broadcast_to(x[:, tf.newaxis, tf.newaxis], [tf.shape(x)[0], self.num_towers, 1, self.embed_dim])
        return tf.gather(self(every, training=False)[:, :, 0], index, batch_dims=1)

    def get_config(self):
        return {
            **super().get_config(),
            "num_towers": self.num_towers,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout_rate,
        }


@tf.keras.utils.register_keras_serializable("syncrec")
class Gates(tf.keras.layers.Layer):
    """N gating networks g^n(E) = softmax(W_g^n vec(E)), W_g^n in R^{K x Tr} (Eq. 3).

    Call: E [B, N, L, r] with L <= T (a batch trimmed of leading all-PAD steps; PAD rows of E are
    zero, so the gate reads the last L steps' weights and gives what the full T steps give)
      -> [B, N, K], one distribution over the K experts per sequence (Eq. 3), or, with `causal`,
      -> [B, N, L, K]: the gate at step t reads steps <= t only, as if the sequence ended at t
         (the same weights, shifted: at the last step it equals Eq. 3's gate, so inference is unchanged).
    """

    def __init__(self, num_gates: int, num_experts: int, max_len: int, embed_dim: int, causal: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_gates, self.num_experts, self.max_len, self.embed_dim, self.causal = (
            num_gates,
            num_experts,
            max_len,
            embed_dim,
            causal,
        )

    def build(self, input_shape):
        flat = self.max_len * self.embed_dim
        self.kernel = self.add_weight(
            name="kernel", shape=[self.num_gates, flat, self.num_experts], initializer="glorot_uniform"
        )
        self.bias = self.add_weight(name="bias", shape=[self.num_gates, self.num_experts], initializer="zeros")
        super().build(input_shape)

    def call(self, e, causal=None):
        causal = self.causal if causal is None else causal
        shape = tf.shape(e)
        length = shape[2]
        if not causal:
            flat = tf.reshape(e, [shape[0], shape[1], length * self.embed_dim])
            kernel = self.kernel[:, (self.max_len - length) * self.embed_dim :]
            return tf.nn.softmax(tf.einsum("bnf,nfk->bnk", flat, kernel) + self.bias, axis=-1)
        # logits_t = b + sum_{s<=t} W[T-1-(t-s)] e_s: a causal convolution with the last L kernel steps.
        kernel = tf.reshape(self.kernel, [self.num_gates, self.max_len, self.embed_dim, self.num_experts])[
            :, self.max_len - length :
        ]
        padded = tf.pad(e, [[0, 0], [0, 0], [length - 1, 0], [0, 0]])
        logits = [tf.nn.conv1d(padded[:, n], kernel[n], stride=1, padding="VALID") for n in range(self.num_gates)]
        return tf.nn.softmax(tf.stack(logits, axis=1) + self.bias[tf.newaxis, :, tf.newaxis, :], axis=-1)

    def for_rows(self, e, index):
        """Eq. 3 with gate index[b] for row b: e [B, L, r] -> [B, K] (one sequence per row, any gate). Every gate
        reads every row (N small products) and each row keeps its own: the gate is defined once, in `call`."""
        every = tf.broadcast_to(e[:, tf.newaxis], [tf.shape(e)[0], self.num_gates, tf.shape(e)[1], self.embed_dim])
        return tf.gather(self(every, causal=False), index, batch_dims=1)

    def get_config(self):
        return {
            **super().get_config(),
            "num_gates": self.num_gates,
            "num_experts": self.num_experts,
            "max_len": self.max_len,
            "embed_dim": self.embed_dim,
            "causal": self.causal,
        }


def _mix(gates: tf.Tensor, k: int, outputs: tf.Tensor) -> tf.Tensor:
    """g_k * f_k(E): gates [..., K] (one per sequence) or [..., L, K] (causal: one per step)."""
    weight = gates[..., k]
    while weight.shape.rank < outputs.shape.rank:
        weight = weight[..., tf.newaxis]
    return weight * outputs


@tf.keras.utils.register_keras_serializable("syncrec")
class AsymmetricMixtureOfExperts(tf.keras.layers.Layer):
    """ACMoE (Eq. 2 and 4): K shared transformer experts, D single-domain gates and one cross gate.

    f^d(E^d)      = sum_{k<=j} g^d_k SG(f_k(E^d)) + sum_{k>j} g^d_k f_k(E^d)        (Eq. 2)
    f^cross(E)    = sum_{k<=j} g^c_k f_k(E)       + sum_{k>j} g^c_k SG(f_k(E))        (Eq. 4)
    SG = tf.stop_gradient: experts 1..j learn only from the cross-domain task, j+1..K only from
    the single-domain tasks. Each expert runs separately on the single and the cross sequences, so a
    stopped branch is off the gradient path and builds no backward pass (a joint run would back-
    propagate through every expert on every sequence and zero 3/4 of it afterwards).
    `asymmetric=False` gives the vanilla MMoE of the "w/o ACMoE" ablation.
    Call: (E^single [B, D, L1, r], X^d ids [B, D, L1], E [B, L2, r], X ids [B, L2])
      -> (f^single [B, D, L1, r], f^cross [B, L2, r], gates: single [B, D, (L1,) K], cross [B, (L2,) K]).
    """

    def __init__(
        self,
        num_domains,
        num_experts,
        num_cross_experts,
        embed_dim,
        num_heads,
        num_blocks,
        dropout,
        asymmetric=True,
        max_len=50,
        causal_gates=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_domains, self.num_experts, self.num_cross_experts = num_domains, num_experts, num_cross_experts
        self.embed_dim, self.num_heads, self.num_blocks, self.dropout_rate, self.asymmetric = (
            embed_dim,
            num_heads,
            num_blocks,
            dropout,
            asymmetric,
        )
        self.max_len, self.causal_gates = max_len, causal_gates
        self.experts = [
            TransformerExpert(embed_dim, num_heads, num_blocks, dropout, name=f"expert_{k}") for k in range(num_experts)
        ]
        self.single_gates = Gates(num_domains, num_experts, max_len, embed_dim, causal_gates, name="single_gates")
        self.cross_gate = Gates(1, num_experts, max_len, embed_dim, causal_gates, name="cross_gate")

    def single(self, single_emb, single_ids, training=None):
        """f^d for every domain's X^d (Eq. 2) and the single gates."""
        batch, length = tf.shape(single_ids)[0], tf.shape(single_ids)[2]
        flat = tf.reshape(single_emb, [-1, length, self.embed_dim])
        mask = causal_padding_mask(tf.reshape(single_ids, [-1, length]))
        gates = self.single_gates(single_emb)
        mixed = 0.0
        for k, expert in enumerate(self.experts):
            out = tf.reshape(expert(flat, mask, training=training), [batch, self.num_domains, length, self.embed_dim])
            mixed += _mix(gates, k, tf.stop_gradient(out) if self.asymmetric and k < self.num_cross_experts else out)
        return mixed, gates

    def cross(self, cross_emb, cross_ids, training=None, causal=None, last_only=False):
        """f^cross for X (Eq. 4) and the cross gate (`last_only`: the last position only, see TransformerExpert)."""
        mask = causal_padding_mask(cross_ids)
        gates = self.cross_gate(cross_emb[:, tf.newaxis], causal=causal)[:, 0]
        mixed = 0.0
        for k, expert in enumerate(self.experts):
            out = expert(cross_emb, mask, training=training, last_only=last_only)
            mixed += _mix(gates, k, tf.stop_gradient(out) if self.asymmetric and k >= self.num_cross_experts else out)
        return mixed, gates

    def call(self, single_emb, single_ids, cross_emb, cross_ids, training=None):
        f_single, g_single = self.single(single_emb, single_ids, training)
        f_cross, g_cross = self.cross(cross_emb, cross_ids, training)
        return f_single, f_cross, (g_single, g_cross)

    def cross_only(self, cross_emb, cross_ids, training=None):
        """f^cross of the last position [B, 1, r] (inference, Eq. 19: no single-domain sequences needed). The gate
        of the last step is Eq. 3's gate whether or not gates are causal, so it is computed once per sequence."""
        return self.cross(cross_emb, cross_ids, training, causal=False, last_only=True)[0]

    def single_last(self, emb, ids, domain_index):
        """f^d of the last position [B, 1, r] for one X^d per row (inference): row b is a sequence of domain
        domain_index[b] + 1, mixed by that domain's gate (Eq. 2; stop-gradient is the identity here). The
        last step's gate is Eq. 3's gate whether or not gates are causal."""
        mask = causal_padding_mask(ids)
        gates = self.single_gates.for_rows(emb, domain_index)
        mixed = 0.0
        for k, expert in enumerate(self.experts):
            mixed += _mix(gates, k, expert(emb, mask, training=False, last_only=True))
        return mixed

    def get_config(self):
        return {
            **super().get_config(),
            "num_domains": self.num_domains,
            "num_experts": self.num_experts,
            "num_cross_experts": self.num_cross_experts,
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "num_blocks": self.num_blocks,
            "dropout": self.dropout_rate,
            "asymmetric": self.asymmetric,
            "max_len": self.max_len,
            "causal_gates": self.causal_gates,
        }
