"""Shared embedding layer (§4.1)."""

import tensorflow as tf

from model_keras.layers.fast import FastDropout, LayerNorm


@tf.keras.utils.register_keras_serializable("syncrec")
class SharedEmbedding(tf.keras.layers.Layer):
    """Item table M = [M^A; M^B; ...] and learnable positions P, shared by X and every X^d.

    E = Dropout(LayerNorm(M[x] + P)) with E, P in R^{T x r} (§4.1: E^d <- E^d + P, E <- E + P).
    Args: num_items |V| (ids include PAD=0 and SOS=1), max_len T, embed_dim r.
    Call: ids [..., T] int -> [..., T, r].
    """

    def __init__(self, num_items: int, max_len: int, embed_dim: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.num_items, self.max_len, self.embed_dim, self.dropout_rate = num_items, max_len, embed_dim, dropout
        self.items = tf.keras.layers.Embedding(
            num_items,
            embed_dim,
            embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02),
            name="item_table",
        )
        self.positions = tf.keras.layers.Embedding(
            max_len,
            embed_dim,
            embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02),
            name="position_table",
        )
        self.norm = LayerNorm(epsilon=1e-6)
        self.dropout = FastDropout(dropout)

    @property
    def item_table(self) -> tf.Variable:
        """M, used both for look-ups and for scoring (Eq. 8, 9, 19)."""
        return self.items.embeddings

    def call(self, ids, training=None):
        shape = tf.shape(ids)
        length = shape[-1]
        flat = tf.reshape(ids, [-1, length])  # any leading dims ([B] or [B, D]) share one path
        positions = self.positions(tf.range(self.max_len - length, self.max_len))
        out = self.dropout(self.norm(self.items(flat) + positions), training=training)
        return tf.reshape(out, tf.concat([shape, [self.embed_dim]], axis=0))

    def get_config(self):
        return {
            **super().get_config(),
            "num_items": self.num_items,
            "max_len": self.max_len,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout_rate,
        }
