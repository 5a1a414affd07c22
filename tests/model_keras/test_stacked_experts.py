"""The serving encoder's stacked experts give the per-expert layers' user representation."""

import numpy as np
import pytest
import tensorflow as tf

from model_keras.layers.stacked_experts import StackedExperts


def randomize(model, seed):
    """Every weight random (biases, LayerNorm gains and offsets too), so a misplaced term shows."""
    rng = np.random.default_rng(seed)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(0.0, 0.3, variable.shape).astype(np.float32))


@pytest.mark.parametrize(
    "settings",
    [
        {"num_blocks": 2, "num_heads": 1, "num_experts": 4, "num_cross_experts": 3},
        {"num_blocks": 1, "num_heads": 2, "num_experts": 3, "num_cross_experts": 1},
        {"num_blocks": 2, "num_heads": 2, "num_experts": 2, "num_cross_experts": 1, "causal_gates": True},
    ],
)
def test_stacked_experts_match_the_per_expert_layers(make_model, batch, settings):
    model = make_model(**settings)
    randomize(model, seed=settings["num_experts"])
    stacked = StackedExperts(model.acmoe)
    items = batch["item"]
    expected = model.user_representation(items).numpy()
    got = model.user_representation(items, stacked_experts=stacked).numpy()
    assert np.std(expected) > 0.1  # a representation that varies, not a constant both paths could share
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)
    # One user alone (the serving case: batch 1, trimmed to its own length) gives its row of the batch.
    one = tf.function(lambda x: model.user_representation(x, stacked_experts=stacked))(items[3:4]).numpy()
    np.testing.assert_allclose(one[0], expected[3], atol=2e-5, rtol=1e-4)
