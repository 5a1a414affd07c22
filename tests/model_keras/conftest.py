"""A tiny model over the embedded sample's examples, shared by the model tests."""

import pytest

from schemas.vocabulary import Vocabulary
from model_keras.config import ModelConfig
from model_keras.input_fn import make_dataset
from model_keras.model import SyNCRec


@pytest.fixture(scope="session")
def vocab(sample_examples):
    return Vocabulary.load(str(sample_examples[0] / "vocabulary.json"))


@pytest.fixture(scope="session")
def batch(sample_examples, vocab):
    return next(iter(make_dataset(str(sample_examples[0]), "train", vocab.num_domains, batch_size=32)))


@pytest.fixture
def make_model(vocab, batch):
    def build(**overrides):
        values = dict(
            num_items=vocab.num_items,
            num_domains=vocab.num_domains,
            max_len=20,
            embed_dim=16,
            num_experts=4,
            num_cross_experts=1,
            num_blocks=1,
            dropout=0.0,
        )
        values.update(overrides)
        model = SyNCRec(ModelConfig(**values), [(d.start, d.end) for d in vocab.domains], vocab.domain_names)
        return model.build_for(batch)

    return build
