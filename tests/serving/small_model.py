"""A small SyNCRec SavedModel (three domains A, B, C of 30, 40 and 50 items) exported for serving tests."""

from model_keras.config import ModelConfig
from model_keras.model import SyNCRec
from model_keras.signatures import export_saved_model
from model_keras.warm_start import dummy_batch
from schemas.vocabulary import Vocabulary


def small_vocabulary() -> Vocabulary:
    return Vocabulary.from_counts({(d, f"{d}-{i}"): 1 for d, n in (("A", 30), ("B", 40), ("C", 50)) for i in range(n)})


def export(tmp_path, name: str, seed: int = 0) -> str:
    """An untrained (randomly initialised, seeded) model's SavedModel under tmp_path/name."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    vocab = small_vocabulary()
    config = ModelConfig(
        num_items=vocab.num_items,
        num_domains=3,
        max_len=10,
        embed_dim=8,
        num_blocks=1,
        num_experts=2,
        num_cross_experts=1,
    )
    model = SyNCRec(config, [(d.start, d.end) for d in vocab.domains], vocab.domain_names).build_for(
        dummy_batch(config)
    )
    return export_saved_model(model, 10, vocab, str(tmp_path / name))
