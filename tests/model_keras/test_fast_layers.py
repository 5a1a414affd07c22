"""FastDropout and LayerNorm: the same math as Keras' layers, cheaper on CPU."""

import numpy as np
import pytest
import tensorflow as tf

from model_keras.layers.fast import Attention, FastDropout, LayerNorm


def test_fast_dropout_keeps_with_the_right_probability_and_scale():
    x = tf.ones([1000, 1000])
    layer = FastDropout(0.2)
    y = layer(x, training=True).numpy()
    assert np.mean(y != 0) == pytest.approx(0.8, abs=0.003)
    assert set(np.unique(y)) == {0.0, np.float32(1.25)}
    assert not np.array_equal(y, layer(x, training=True).numpy())  # a fresh mask every call
    assert np.array_equal(layer(x, training=False).numpy(), x.numpy()) and np.array_equal(
        FastDropout(0.0)(x, training=True), x
    )


def test_fast_dropout_is_reproducible_under_a_seed():
    x = tf.ones([7, 9])
    tf.random.set_seed(4)
    first = FastDropout(0.5)(x, training=True).numpy()
    tf.random.set_seed(4)
    assert np.array_equal(first, FastDropout(0.5)(x, training=True).numpy())


def test_layer_norm_matches_keras():
    x = tf.random.normal([4, 5, 16]) * 3 + 1
    ours, keras = LayerNorm(1e-6), tf.keras.layers.LayerNormalization(epsilon=1e-6)
    ours.build(x.shape)
    keras.build(x.shape)
    weights = [
        np.random.default_rng(0).normal(size=16).astype("float32"),
        np.random.default_rng(1).normal(size=16).astype("float32"),
    ]
    ours.set_weights(weights)
    keras.set_weights(weights)
    np.testing.assert_allclose(ours(x), keras(x), atol=1e-5)
    assert [w.name.split("/")[-1] for w in ours.weights] == [w.name.split("/")[-1] for w in keras.weights]


def test_attention_is_keras_attention_with_fast_dropout():
    layer = Attention(1, 8, dropout=0.3)
    z = tf.random.normal([2, 4, 8])
    layer(z, z)
    assert isinstance(layer._dropout_layer, FastDropout)
    reference = tf.keras.layers.MultiHeadAttention(1, 8, dropout=0.3)
    reference(z, z)
    reference.set_weights(layer.get_weights())
    np.testing.assert_allclose(layer(z, z, training=False), reference(z, z, training=False), atol=1e-6)
