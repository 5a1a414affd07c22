"""Transformer sequential expert f^k_TRM (§4.2.2, Eq. 5-7)."""

import tensorflow as tf

from model_keras.layers.fast import Attention, FastDropout, LayerNorm


def causal_padding_mask(ids: tf.Tensor) -> tf.Tensor:
    """[B, T, T] bool: query t may attend key s iff s <= t and key s is not PAD (id 0)."""
    length = tf.shape(ids)[-1]
    causal = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
    keys = tf.not_equal(ids, 0)[:, tf.newaxis, :]
    return tf.logical_and(causal[tf.newaxis], keys)


@tf.keras.utils.register_keras_serializable("syncrec")
class TransformerBlock(tf.keras.layers.Layer):
    """H = LN(Z + MSA(Z)) (Eq. 5-6, causal); out = LN(H + FFN(H)), FFN = GELU(H W1 + b1) W2 + b2 (Eq. 7)."""

    def __init__(self, embed_dim: int, num_heads: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.dropout_rate = embed_dim, num_heads, dropout
        self.attention = Attention(num_heads, embed_dim // num_heads, dropout=dropout)
        self.ffn_in = tf.keras.layers.Dense(embed_dim, activation="gelu")
        self.ffn_out = tf.keras.layers.Dense(embed_dim)
        self.norm1 = LayerNorm(epsilon=1e-6)
        self.norm2 = LayerNorm(epsilon=1e-6)
        self.drop1 = FastDropout(dropout)
        self.drop2 = FastDropout(dropout)

    def call(self, z, mask, training=None, last_only=False):
        """Every position's output, or with `last_only` the last position's alone ([N, 1, r]): the same
        value (its query attends to every key), computed without the other T-1 queries."""
        query = z[:, -1:] if last_only else z
        attended = self.attention(query, z, attention_mask=mask[:, -1:] if last_only else mask, training=training)
        h = self.norm1(query + self.drop1(attended, training=training))
        return self.norm2(h + self.drop2(self.ffn_out(self.ffn_in(h)), training=training))

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "dropout": self.dropout_rate,
        }


@tf.keras.utils.register_keras_serializable("syncrec")
class TransformerExpert(tf.keras.layers.Layer):
    """f^k_TRM = stack of `num_blocks` causal TransformerBlocks. Call: (E [N, T, r], mask [N, T, T]) -> [N, T, r],
    or [N, 1, r] with `last_only` (inference needs the last position only: the final block skips T-1 queries)."""

    def __init__(self, embed_dim: int, num_heads: int, num_blocks: int, dropout: float, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim, self.num_heads, self.num_blocks, self.dropout_rate = embed_dim, num_heads, num_blocks, dropout
        self.blocks = [TransformerBlock(embed_dim, num_heads, dropout, name=f"block_{i}") for i in range(num_blocks)]

    def call(self, z, mask, training=None, last_only=False):
        for index, block in enumerate(self.blocks):
            z = block(z, mask, training=training, last_only=last_only and index == len(self.blocks) - 1)
        return z

    def get_config(self):
        return {
            **super().get_config(),
            "embed_dim": self.embed_dim,
            "num_heads": self.num_heads,
            "num_blocks": self.num_blocks,
            "dropout": self.dropout_rate,
        }
