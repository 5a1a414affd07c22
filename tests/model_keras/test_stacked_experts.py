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


@pytest.mark.parametrize("settings", [{"num_experts": 4, "num_cross_experts": 3}, {"causal_gates": True}])
def test_one_domain_path_gives_the_single_towers_value(make_model, batch, vocab, settings):
    """Serving a domain from its single tower runs that domain's gate, experts and tower only; per-expert and stacked,
    it gives what the every-domain path (training's, single_user_representation) gives for that domain."""
    model = make_model(**settings)
    randomize(model, seed=7)
    stacked = StackedExperts(model.acmoe)
    domain = tf.constant([(row % vocab.num_domains) + 1 for row in range(batch["item"].shape[0])], tf.int32)
    expected = model.single_user_representation(batch["single_item"], domain).numpy()
    domain_ids = tf.gather(batch["single_item"], domain - 1, batch_dims=1)
    assert np.std(expected) > 0.1
    for experts in (None, stacked):
        got = model.domain_user_representation(domain_ids, domain, experts).numpy()
        np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)


def test_served_view_follows_the_chosen_tower_per_domain(make_model, batch, vocab):
    """prediction_tower picks, per target domain, the cross tower (Eq. 19), the domain's single tower or both summed;
    sdsr models serve their single towers from the start."""
    model = make_model()
    randomize(model, seed=3)
    rows = {**batch, "label_domain": tf.constant([(r % vocab.num_domains) + 1 for r in range(32)], tf.int32)}
    cross = model.representation_for(rows, "cross").numpy()
    single = model.representation_for(rows, "single").numpy()
    np.testing.assert_allclose(model.representation_for(rows, "both").numpy(), cross + single, atol=1e-5)
    np.testing.assert_allclose(model.representation_for(rows).numpy(), cross, atol=1e-6)  # the default: all cross
    chosen = [1, 0, 2] * vocab.num_domains
    model.prediction_tower.assign(chosen[: vocab.num_domains])
    served = model.representation_for(rows).numpy()
    tower = np.array(chosen)[rows["label_domain"].numpy() - 1]
    np.testing.assert_allclose(served[tower == 1], single[tower == 1], atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(served[tower == 0], cross[tower == 0], atol=1e-6)
    np.testing.assert_allclose(served[tower == 2], (cross + single)[tower == 2], atol=2e-5, rtol=1e-4)
    assert np.abs(served[tower == 1] - cross[tower == 1]).max() > 0.1  # the towers differ: the choice shows
    assert make_model(mode="sdsr").prediction_tower.numpy().tolist() == [1] * vocab.num_domains
