"""Trainer entry point (TFX `run_fn` style): examples + config -> trained, exported SyNCRec.

    python -m model_keras.train --examples DIR --output DIR [--set epochs=10 --set embed_dim=64 ...]

Each epoch is followed by a validation pass (99 sampled negatives, the same candidates every
epoch); the weights of the epoch with the best overall valid NDCG@10 are kept (the test split is
never looked at). Writes OUTPUT/checkpoints (resumable), OUTPUT/logs (TensorBoard),
OUTPUT/saved_model (serving signature), OUTPUT/model_config.json and OUTPUT/training.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import tensorflow as tf

from schemas.vocabulary import Vocabulary
from model_keras.config import ModelConfig
from model_keras.evaluation import EvalProtocol, ModelScorer, evaluate
from model_keras.input_fn import make_dataset
from model_keras.model import SyNCRec
from model_keras.signatures import export_saved_model
from model_keras.warm_start import warm_start as warm_start_from

SELECTION_METRIC = "NDCG@10"


def parse_settings(pairs: list[str]) -> dict:
    """`key=value` strings -> dict, values parsed as JSON when possible (ints, floats, bools)."""
    settings = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set {pair!r} is not key=value (e.g. --set epochs=5)")
        key, value = pair.split("=", 1)
        key = key.strip().removeprefix("model.")
        try:
            settings[key] = json.loads(value)
        except ValueError:
            settings[key] = value
    return settings


def build_model(config: ModelConfig, vocabulary: Vocabulary, sample_batch) -> SyNCRec:
    from model_keras.baselines import ARCHITECTURES

    model = ARCHITECTURES[config.architecture](config, [(d.start, d.end) for d in vocabulary.domains], vocabulary.domain_names, name=config.architecture)
    model.build_for(sample_batch)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    return model


class ValidationCallback(tf.keras.callbacks.Callback):
    """Evaluate on the valid split after each epoch; keep the best weights (by NDCG@10)."""

    def __init__(self, examples_dir, vocabulary, protocol, view):
        super().__init__()
        self.examples_dir, self.vocabulary, self.protocol, self.view = examples_dir, vocabulary, protocol, view
        self.best_score, self.best_epoch, self.best_weights, self.best_result, self.history = -1.0, -1, None, None, []

    def on_epoch_end(self, epoch, logs=None):
        result = evaluate(ModelScorer(self.model, self.view), self.examples_dir, "valid", self.vocabulary, self.protocol)
        score = result["all"][SELECTION_METRIC]
        self.history.append({"epoch": epoch + 1, **{k: v for k, v in result["all"].items()}})
        if logs is not None:
            for metric in ("HR@10", "NDCG@10", "MRR"):
                logs[f"val_{metric}"] = result["all"][metric]
        if score > self.best_score:
            self.best_score, self.best_epoch, self.best_result = score, epoch + 1, result
            self.best_weights = self.model.get_weights()


def run_fn(examples_dir: str, output_dir: str, config: ModelConfig, warm_start: str | None = None,
           protocol: EvalProtocol = EvalProtocol(), verbose: int = 1, export: bool = True) -> dict:
    """Train, select on valid, export (SyNCRec and sequence baselines). Returns a summary (also
    written to training.json); `summary["model"]` is the trained model with the best weights."""
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    tf.keras.utils.set_random_seed(config.seed)
    train = make_dataset(examples_dir, "train", vocabulary.num_domains, config.batch_size, shuffle=True, seed=config.seed)
    sample = next(iter(train))
    config.num_items, config.num_domains, config.max_len = vocabulary.num_items, vocabulary.num_domains, int(sample["item"].shape[1])
    config.validate()
    model = build_model(config, vocabulary, sample)
    os.makedirs(output_dir, exist_ok=True)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=tf.Variable(0, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
    elif warm_start:
        warm_info = warm_start_from(model, vocabulary, warm_start)
        print(f"warm start from {warm_start}: {warm_info}")
    initial_epoch = int(checkpoint.epoch.numpy())
    view = "single" if config.mode == "sdsr" else "cross"
    validation = ValidationCallback(examples_dir, vocabulary, protocol, view)
    save_epoch = tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: (checkpoint.epoch.assign(epoch + 1), manager.save()))
    started = time.time()
    callbacks = [validation, save_epoch, tf.keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), update_freq="epoch")]
    if config.epochs > initial_epoch:
        history = model.fit(train, epochs=config.epochs, initial_epoch=initial_epoch, verbose=verbose, callbacks=callbacks)
        epochs_run, loss_history = len(history.epoch), history.history
    else:  # epochs=0 (or already done): export the model as it is, e.g. a warm start unchanged
        epochs_run, loss_history = 0, {}
    seconds = time.time() - started
    best_weights = os.path.join(output_dir, "best", "weights")
    if validation.best_weights is not None:
        model.set_weights(validation.best_weights)
        valid_result = validation.best_result
    elif epochs_run == 0 and initial_epoch > 0 and os.path.exists(best_weights + ".index"):
        # a finished run found again (resume with nothing left): its selected weights, not the last epoch's
        model.load_weights(best_weights).expect_partial()
        valid_result = evaluate(ModelScorer(model, view), examples_dir, "valid", vocabulary, protocol)
        with open(os.path.join(output_dir, "training.json"), encoding="utf-8") as handle:
            previous = json.load(handle)
        validation.best_epoch, validation.history = previous["best_epoch"], previous["valid_history"]
        loss_history = previous["loss_history"]
    else:  # nothing trained (epochs=0): evaluate what we have
        valid_result = evaluate(ModelScorer(model, view), examples_dir, "valid", vocabulary, protocol)
    model.save_weights(best_weights)
    saved_model = None if not export else export_saved_model(model, config.max_len, vocabulary, os.path.join(output_dir, "saved_model"),
                                     {"model_config.json": config.to_dict(), "vocabulary.json": vocabulary.to_json()})
    if saved_model:  # the checkpoint travels with the export so a pushed model can warm-start the next training
        model.save_weights(os.path.join(saved_model, "assets.extra", "checkpoint", "weights"))
    summary = {
        "config": config.to_dict(),
        "best_epoch": validation.best_epoch,
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 2),
        "valid": valid_result,
        "valid_history": validation.history,
        "loss_history": {k: [float(x) for x in v] for k, v in loss_history.items()},
    }
    with open(os.path.join(output_dir, "model_config.json"), "w", encoding="utf-8") as handle:
        json.dump(config.to_dict(), handle, indent=1)
    with open(os.path.join(output_dir, "training.json"), "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=1)
    return {**summary, "model": model}


def load_trained(output_dir: str, examples_dir: str) -> SyNCRec:
    """Rebuild a trained model from code + model_config.json + the best weights (for evaluation)."""
    with open(os.path.join(output_dir, "model_config.json"), encoding="utf-8") as handle:
        config = ModelConfig.from_dict(json.load(handle))
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    sample = next(iter(make_dataset(examples_dir, "valid", vocabulary.num_domains, 2)))
    model = build_model(config, vocabulary, sample)
    model.load_weights(os.path.join(output_dir, "best", "weights")).expect_partial()
    return model


def main(argv: list[str] | None = None) -> int:
    from model_keras.evaluation import format_metrics

    parser = argparse.ArgumentParser(prog="python -m model_keras.train", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", required=True, help="output directory of components.transform")
    parser.add_argument("--output", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model setting, e.g. --set epochs=5")
    parser.add_argument("--warm-start", default=None, help="an exported SavedModel (OUTPUT/saved_model or a pushed version) to start from")
    args = parser.parse_args(argv)
    try:
        config = ModelConfig.from_dict(parse_settings(args.set))
        if not os.path.exists(os.path.join(args.examples, "vocabulary.json")):
            raise ValueError(f"{args.examples} has no vocabulary.json: run `python -m components.transform --output {args.examples}` first")
        summary = run_fn(args.examples, args.output, config, args.warm_start)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_metrics(summary["valid"], f"valid split, best epoch {summary['best_epoch']}"))
    print(f"wrote {args.output} (saved_model/, checkpoints/, logs/, training.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
