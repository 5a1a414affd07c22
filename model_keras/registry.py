"""Every model the trainer, the experiments and the signatures can build: name -> class, in one place.

Adding a model is its class plus one line in MODELS ("module:Class"; imported only when built, so checking a
config never loads TensorFlow), or `register(name, cls)` at run time (tests register a toy model this way).
The experiments derive a variant per registered baseline from this table."""

from __future__ import annotations

import importlib

MODELS: dict[str, str] = {
    "syncrec": "model_keras.model:SyNCRec",
    "sasrec": "model_keras.baselines:SASRec",
    "gru4rec": "model_keras.baselines:GRU4Rec",
    "bprmf": "model_keras.baselines:BPRMF",
}
_REGISTERED: dict[str, type] = {}


def register(name: str, cls: type) -> type:
    """Add a model class under `name` (a subclass of model_keras.base.SequentialRecommender)."""
    _REGISTERED[name] = cls
    return cls


def names() -> tuple[str, ...]:
    """Every model name, the built-in ones first."""
    return tuple(MODELS) + tuple(n for n in _REGISTERED if n not in MODELS)


def model_class(name: str) -> type:
    """The class of a model name; ValueError naming the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(names())}")
    module, _, cls = MODELS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def build(config, vocabulary):
    """The (unbuilt) model of `config.architecture` over `vocabulary`'s domains."""
    return model_class(config.architecture)(
        config, [(d.start, d.end) for d in vocabulary.domains], vocabulary.domain_names, name=config.architecture
    )
