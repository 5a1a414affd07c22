"""ACMoE: gates (Eq. 3), the asymmetric cooperative mixture (Eq. 2, 4) and towers h^d, h^cross."""
import tensorflow as tf

from model_keras.layers.transformer import TransformerExpert, causal_padding_mask


@tf.keras.utils.register_keras_serializable("syncrec")
class Towers(tf.keras.layers.Layer):
    """N independent towers h^n(x) = LN_n(x + W2_n GELU(W1_n x + b1_n) + b2_n), batched with einsum.

    Call: x [B, N, T, r] -> [B, N, T, r]; tower n is applied to slice n (a domain, or the cross task).
    """

    def __init__(self, num_towers: int, embed_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_towers, self.embed_dim, self.dropout_rate = num_towers, embed_dim, dropout
        self.dropout = tf.keras.layers.Dropout(dropout)

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

    def get_config(self):
        return {**super().get_config(), "num_towers": self.num_towers, "embed_dim": self.embed_dim, "dropout": self.dropout_rate}


@tf.keras.utils.register_keras_serializable("syncrec")
class Gates(tf.keras.layers.Layer):
    """N gating networks g^n(E) = softmax(W_g^n vec(E)), W_g^n in R^{K x Tr} (Eq. 3).

    Call: E [B, N, T, r] -> [B, N, K] (one distribution over the K experts per sequence).
    """

    def __init__(self, num_gates: int, num_experts: int, **kwargs):
        super().__init__(**kwargs)
        self.num_gates, self.num_experts = num_gates, num_experts

    def build(self, input_shape):
        flat = int(input_shape[-2]) * int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=[self.num_gates, flat, self.num_experts], initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=[self.num_gates, self.num_experts], initializer="zeros")
        super().build(input_shape)

    def call(self, e):
        shape = tf.shape(e)
        flat = tf.reshape(e, [shape[0], shape[1], shape[2] * shape[3]])
        return tf.nn.softmax(tf.einsum("bnf,nfk->bnk", flat, self.kernel) + self.bias, axis=-1)

    def get_config(self):
        return {**super().get_config(), "num_gates": self.num_gates, "num_experts": self.num_experts}


@tf.keras.utils.register_keras_serializable("syncrec")
class AsymmetricMixtureOfExperts(tf.keras.layers.Layer):
    """ACMoE (Eq. 2 and 4): K shared transformer experts, D single-domain gates and one cross gate.

    f^d(E^d)      = sum_{k<=j} g^d_k SG(f_k(E^d)) + sum_{k>j} g^d_k f_k(E^d)        (Eq. 2)
    f^cross(E)    = sum_{k<=j} g^c_k f_k(E)       + sum_{k>j} g^c_k SG(f_k(E))        (Eq. 4)
    SG = tf.stop_gradient: experts 1..j learn only from the cross-domain task, j+1..K only from
    the single-domain tasks. `asymmetric=False` gives the vanilla MMoE of the "w/o ACMoE" ablation.
    Call: (E^single [B, D, T, r], X^d ids [B, D, T], E [B, T, r], X ids [B, T])
      -> (f^single [B, D, T, r], f^cross [B, T, r], gates [B, D+1, K]).
    """

    def __init__(self, num_domains, num_experts, num_cross_experts, embed_dim, num_heads, num_blocks, dropout, asymmetric=True, **kwargs):
        super().__init__(**kwargs)
        self.num_domains, self.num_experts, self.num_cross_experts = num_domains, num_experts, num_cross_experts
        self.embed_dim, self.num_heads, self.num_blocks, self.dropout_rate, self.asymmetric = embed_dim, num_heads, num_blocks, dropout, asymmetric
        self.experts = [TransformerExpert(embed_dim, num_heads, num_blocks, dropout, name=f"expert_{k}") for k in range(num_experts)]
        self.single_gates = Gates(num_domains, num_experts, name="single_gates")
        self.cross_gate = Gates(1, num_experts, name="cross_gate")

    def expert_outputs(self, single_emb, single_ids, cross_emb, cross_ids, training=None):
        """Run every expert once on all D single sequences and the cross sequence together."""
        batch, length = tf.shape(cross_ids)[0], tf.shape(cross_ids)[1]
        z = tf.concat([tf.reshape(single_emb, [-1, length, self.embed_dim]), cross_emb], axis=0)
        ids = tf.concat([tf.reshape(single_ids, [-1, length]), cross_ids], axis=0)
        mask = causal_padding_mask(ids)
        outputs = []
        for expert in self.experts:
            out = expert(z, mask, training=training)
            single = tf.reshape(out[: batch * self.num_domains], [batch, self.num_domains, length, self.embed_dim])
            outputs.append((single, out[batch * self.num_domains :]))
        return outputs

    def call(self, single_emb, single_ids, cross_emb, cross_ids, training=None):
        j = self.num_cross_experts
        g_single = self.single_gates(single_emb)  # [B, D, K]
        g_cross = self.cross_gate(cross_emb[:, tf.newaxis])[:, 0]  # [B, K]
        f_single, f_cross = 0.0, 0.0
        for k, (single, cross) in enumerate(self.expert_outputs(single_emb, single_ids, cross_emb, cross_ids, training)):
            if self.asymmetric:
                single = tf.stop_gradient(single) if k < j else single
                cross = cross if k < j else tf.stop_gradient(cross)
            f_single += g_single[:, :, k, tf.newaxis, tf.newaxis] * single
            f_cross += g_cross[:, k, tf.newaxis, tf.newaxis] * cross
        return f_single, f_cross, tf.concat([g_single, g_cross[:, tf.newaxis]], axis=1)

    def cross_only(self, cross_emb, cross_ids, training=None):
        """f^cross alone (inference path of Eq. 19: no single-domain sequences needed)."""
        g_cross = self.cross_gate(cross_emb[:, tf.newaxis])[:, 0]
        mask = causal_padding_mask(cross_ids)
        return tf.add_n([g_cross[:, k, tf.newaxis, tf.newaxis] * expert(cross_emb, mask, training=training) for k, expert in enumerate(self.experts)])

    def get_config(self):
        return {
            **super().get_config(), "num_domains": self.num_domains, "num_experts": self.num_experts, "num_cross_experts": self.num_cross_experts,
            "embed_dim": self.embed_dim, "num_heads": self.num_heads, "num_blocks": self.num_blocks, "dropout": self.dropout_rate, "asymmetric": self.asymmetric,
        }
