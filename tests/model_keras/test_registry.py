"""Adding a model is one class plus one registry entry: a toy model, registered here, trains through the generic
trainer, is selected on valid, exported with the serving signatures and warm-started like any other."""

import json

import pytest
import tensorflow as tf

from model_keras import registry
from model_keras.base import SequentialRecommender
from model_keras.baselines import SequenceBaseline
from model_keras.config import ModelConfig
from model_keras.train import run_fn


class LastItem(SequenceBaseline):
    """A toy: the user is a dense map of the last item's embedding (no attention, no recurrence)."""

    def __init__(self, config, domain_ranges, domain_names=None, **kwargs):
        super().__init__(config, domain_ranges, domain_names, **kwargs)
        self.project = tf.keras.layers.Dense(config.embed_dim, name="project")

    def encode_sequence(self, ids, training=None, last_only=False):
        hidden = self.project(self.embed(ids, training))
        return hidden[:, -1:] if last_only else hidden


def test_every_built_in_model_lives_in_model_keras_and_loads():
    for name, target in registry.MODELS.items():
        assert target.startswith("model_keras."), target  # the layering rule for the registry's dynamic imports
        assert issubclass(registry.model_class(name), SequentialRecommender), name


def test_unknown_architectures_are_refused_naming_the_known_ones():
    with pytest.raises(ValueError, match="architecture must be one of .*'syncrec', 'sasrec'"):
        ModelConfig(architecture="nope").validate()


@pytest.mark.slow
def test_a_registered_toy_model_trains_one_step_through_the_generic_trainer(sample_examples, tmp_path):
    registry.register("last-item", LastItem)
    assert "last-item" in registry.names()
    config = ModelConfig(architecture="last-item", epochs=1, embed_dim=8, max_len=20, batch_size=256)
    summary = run_fn(str(sample_examples[0]), str(tmp_path / "run"), config, verbose=0)
    assert summary["best_epoch"] == 1 and summary["valid"]["all"]["users"] == 500
    assert summary["prediction_towers"] is None  # one tower: nothing to choose
    served = tf.saved_model.load(str(tmp_path / "run" / "saved_model")).signatures["serving_default"]
    out = served(
        history_items=tf.constant([["", "x"]]),
        history_domains=tf.constant([["", "Books"]]),
        history_length=tf.constant([2]),
        target_domain=tf.constant(["Books"]),
        k=tf.constant([3]),
    )
    assert out["item_ids"].shape == (1, 3)
    saved = json.loads((tmp_path / "run" / "saved_model" / "assets.extra" / "model_config.json").read_text())
    assert saved["architecture"] == "last-item"


def test_a_model_that_cannot_serve_a_history_says_so():
    from pipeline.config import load_config

    assert registry.model_class("bprmf").not_servable_reason.startswith("BPR-MF scores a user by the id")
    with pytest.raises(ValueError, match="architecture=bprmf: the pipeline pushes a model to serve, and BPR-MF"):
        load_config(None, ["architecture=bprmf"])
