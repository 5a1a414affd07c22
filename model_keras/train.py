"""Trainer entry point (TFX `run_fn` style): examples + config -> trained, selected, exported model.

    python -m model_keras.train --examples DIR --output DIR [--set epochs=200 --set patience=11 ...]
        [--negatives 99] [--negatives-from {domain,all}] [--full-ranking]

Each epoch is followed by a validation pass (the protocol above; the same candidates every epoch);
the weights of the epoch with the best overall valid NDCG@10 are kept (the test split is never looked
at), and training stops when `patience` epochs in a row bring no better one (not before `min_epochs`),
or after `epochs`.
After selection, a SyNCRec model trained on both tasks gets the tower that serves each domain
(`prediction_towers`: the domain's single-domain tower where it wins on valid by more than
`tower_choice_margin` standard errors, else the cross tower); the
choice is saved with the selected weights, and a finished run found in OUTPUT takes it without training.
A loss that turns NaN or infinite stops the run with an error (nothing is exported). Writes
OUTPUT/checkpoints (resumable), OUTPUT/best (the selected weights and the selection state),
OUTPUT/logs (TensorBoard), OUTPUT/saved_model, OUTPUT/model_config.json and OUTPUT/training.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import tensorflow as tf

from model_keras import distribute
from model_keras.config import ModelConfig, parse_settings
from model_keras.evaluation import (
    POOLS,
    EvalProtocol,
    ModelScorer,
    PopularityScorer,
    evaluate,
    format_metrics,
    rank_users_by_view,
)
from model_keras.input_fn import make_dataset
from model_keras.metrics import paired_gain, rank_metrics, towers_line
from model_keras.signatures import export_saved_model
from model_keras.warm_start import warm_start as warm_start_from
from schemas.features import require_complete_examples
from schemas.vocabulary import Vocabulary

SELECTION_K = 10
SELECTION_METRIC = f"NDCG@{SELECTION_K}"
HISTORY_DOMAIN_METRICS = ("users", f"HR@{SELECTION_K}", SELECTION_METRIC, "MRR")  # each epoch's line, per domain
NON_FINITE_LOSS = "training loss is not finite"


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or infinite; str() says when and what to change."""


def fit_to_data(config: ModelConfig, vocabulary: Vocabulary, sample_batch) -> None:
    """The sizes that come from the data (items, domains, T of the examples), then every setting checked."""
    config.num_items, config.num_domains = vocabulary.num_items, vocabulary.num_domains
    config.max_len = int(sample_batch["item"].shape[1])
    config.validate()


def build_model(config: ModelConfig, vocabulary: Vocabulary, sample_batch):
    """The model named by `config.architecture`, with every weight created and an optimizer."""
    from model_keras import registry

    model = registry.build(config, vocabulary)
    model.build_for(sample_batch)
    if config.weight_decay > 0:  # decoupled weight decay (AdamW), ABXI's regulariser
        optimizer = tf.keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay)
    else:
        optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    model.compile(optimizer=optimizer)
    # The optimizer's slots made now, not inside the first traced train step: a tf.function that creates
    # variables is traced twice, and a SyNCRec train step takes seconds to trace (every run, every test).
    optimizer.build(model.trainable_variables)
    return model


def use_popularity_proposal(model, config: ModelConfig, examples_dir: str, vocabulary: Vocabulary) -> None:
    """Under the sampled softmax's popularity sampling, the proposal is the training targets' item counts: set them
    before the first step (they are saved with the weights, so a resumed run keeps them)."""
    if config.loss == "softmax" and config.softmax_sampling == "popularity":
        model.set_item_counts(PopularityScorer.from_examples(examples_dir, vocabulary).counts)


class LearningRateSchedule(tf.keras.callbacks.Callback):
    """Linear warm-up over `warmup_epochs`, then the learning rate times `lr_plateau_factor` whenever valid
    NDCG@10 has not improved for `lr_plateau_patience` epochs (0: never). It reads the selection state, so it
    follows the same valid figure that selects and stops, and it resumes with the run (the rate is an optimizer
    variable, saved in the checkpoint)."""

    def __init__(self, config: ModelConfig, validation):
        super().__init__()
        self.config, self.validation = config, validation

    @property
    def last_decay(self) -> int:
        return self.validation.state.get("last_lr_decay", 0)  # kept in the selection state: resumes with it

    def on_epoch_begin(self, epoch, logs=None):
        c = self.config
        if c.warmup_epochs and epoch < c.warmup_epochs:
            self.model.optimizer.learning_rate.assign(c.learning_rate * (epoch + 1) / c.warmup_epochs)
        elif c.warmup_epochs and epoch == c.warmup_epochs and self.last_decay == 0:
            self.model.optimizer.learning_rate.assign(c.learning_rate)

    def on_epoch_end(self, epoch, logs=None):
        c, done = self.config, epoch + 1
        stalled = done - max(self.validation.state["best_epoch"], self.last_decay, c.warmup_epochs)
        if c.lr_plateau_patience and stalled >= c.lr_plateau_patience:
            rate = self.model.optimizer.learning_rate
            rate.assign(rate * c.lr_plateau_factor)
            self.validation.state["last_lr_decay"] = done
            self.validation._save_state()
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate.numpy())


class ValidationCallback(tf.keras.callbacks.Callback):
    """After each epoch: refuse a non-finite loss, evaluate on valid, keep the best weights (NDCG@10),
    stop after `patience` epochs without a better one, but never before epoch `min_epochs` (a model can sit
    on a plateau after a fast first epoch and climb later). The selection state lives in BEST_DIR, so a
    resumed run continues it."""

    def __init__(self, examples_dir, vocabulary, protocol, view, best_dir, patience, min_epochs=0):
        super().__init__()
        self.examples_dir, self.vocabulary, self.protocol, self.view = examples_dir, vocabulary, protocol, view
        self.best_dir, self.patience, self.min_epochs = best_dir, patience, min_epochs
        self.scorer = None  # built on the first epoch (the model is known then) and kept: compiled once
        self.state = {"best_epoch": 0, "best_score": -1.0, "best_result": None, "history": [], "stopped_early": False}
        if os.path.isfile(self._state_path):
            with open(self._state_path, encoding="utf-8") as handle:
                self.state.update(json.load(handle))

    @property
    def _state_path(self):
        return os.path.join(self.best_dir, "state.json")

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        loss = float(logs.get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"training diverged in epoch {epoch + 1}: the epoch's loss is {loss}; "
                f"lower learning_rate (now {self.model.config.learning_rate}) or check the data"
            )
        self.scorer = self.scorer or ModelScorer(self.model, self.view)
        result = evaluate(self.scorer, self.examples_dir, "valid", self.vocabulary, self.protocol)
        score = result["all"][SELECTION_METRIC]
        terms = {k: float(v) for k, v in logs.items() if not k.startswith("val_")}  # losses, lambda, phi
        # each domain's figures too: the selection reads "all", and a domain that peaks at another epoch shows here
        per_domain = {name: {m: row[m] for m in HISTORY_DOMAIN_METRICS} for name, row in result["domains"].items()}
        self.state["history"].append(
            {"epoch": epoch + 1, "loss": loss, **result["all"], "domains": per_domain, "terms": terms}
        )
        for metric in ("HR@10", "NDCG@10", "MRR"):
            logs[f"val_{metric}"] = result["all"][metric]
        if score > self.state["best_score"] and result["health"]["non_finite_scores"] == 0:
            self.state.update(best_epoch=epoch + 1, best_score=score, best_result=result)
            keep_best_weights(self.model, self.best_dir, self.state, f"epoch-{epoch + 1}")
        elif self.patience and epoch + 1 >= self.min_epochs and epoch + 1 - self.state["best_epoch"] >= self.patience:
            self.state["stopped_early"] = True
            self.model.stop_training = True
        self._save_state()

    def resume_at(self, epoch: int) -> None:
        """Forget epochs after `epoch`, the last one the checkpoint holds: a run stopped between saving this
        state and saving the checkpoint trains that epoch again, and it must not be listed twice."""
        self.state["history"] = [entry for entry in self.state["history"] if entry["epoch"] <= epoch]

    def _save_state(self):
        _save_selection_state(self.best_dir, self.state)


def _save_selection_state(best_dir: str, state: dict) -> None:
    os.makedirs(best_dir, exist_ok=True)
    path = os.path.join(best_dir, "state.json")
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(path + ".tmp", path)


def keep_best_weights(model, best_dir: str, state: dict, tag: str) -> None:
    """Write the weights under a new name, point the selection state at them, and only then drop the older ones.

    A checkpoint is two files (index and data) written one after the other, so weights rewritten in place are
    unreadable when a run is killed between the two (a resumed ABE run failed at its end, restoring a best epoch
    whose data file belonged to a later save). Here a kill at any moment leaves a state.json naming complete
    weights."""
    if state.get("weights", "").split("/")[0] == tag:  # the same epoch saved again (its towers chosen anew)
        tag = f"{tag}-again"
    model.save_weights(os.path.join(best_dir, tag, "weights"))
    state["weights"] = f"{tag}/weights"
    _save_selection_state(best_dir, state)
    for entry in os.listdir(best_dir):
        if entry != tag and os.path.isdir(os.path.join(best_dir, entry)) and entry.startswith("epoch-"):
            shutil.rmtree(os.path.join(best_dir, entry), ignore_errors=True)


def best_weights(output_dir: str) -> str:
    """The checkpoint prefix of a run's selected weights: the one OUTPUT/best/state.json names (runs recorded
    before the state named them kept a single OUTPUT/best/weights)."""
    best_dir = os.path.join(output_dir, "best")
    state_path = os.path.join(best_dir, "state.json")
    state = {}
    if os.path.isfile(state_path):
        with open(state_path, encoding="utf-8") as handle:
            state = json.load(handle)
    return os.path.join(best_dir, state.get("weights", "weights"))


def _restore_or_warm_start(model, vocabulary, output_dir, warm_start):
    """Resume from OUTPUT/checkpoints when there are some, else copy weights from `warm_start`."""
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, epoch=tf.Variable(0, dtype=tf.int64))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(output_dir, "checkpoints"), max_to_keep=2)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint).expect_partial()
    elif warm_start:
        print(f"warm start from {warm_start}: {warm_start_from(model, vocabulary, warm_start)}")
    return checkpoint, manager


def _fit(model, train, config, initial_epoch, callbacks, verbose, steps=None) -> int:
    """model.fit from `initial_epoch`; the number of epochs run now. A NaN loss is TrainingDiverged."""
    try:
        history = model.fit(
            train,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            verbose=verbose,
            callbacks=callbacks,
            steps_per_epoch=steps,
        )
    except tf.errors.InvalidArgumentError as err:
        if NON_FINITE_LOSS in str(err):
            raise TrainingDiverged(
                f"training diverged: a batch's loss became NaN or infinite; lower learning_rate "
                f"(now {config.learning_rate}) or check the data"
            ) from None
        raise
    return len(history.epoch)


def _check_finite_weights(model) -> None:
    bad = [w.name for w in model.weights if not np.all(np.isfinite(w.numpy()))]
    if bad:
        raise TrainingDiverged(f"the selected weights hold NaN or infinite values ({bad[:3]}); nothing is exported")


def _previous_summary(output_dir: str) -> dict:
    """training.json of the runs this one resumes ({} for a fresh run)."""
    path = os.path.join(output_dir, "training.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _loss_history(valid_history: list) -> dict:
    """Per-epoch training terms (losses, lambda, phi) -> lists over epochs, the runs this one resumed included
    (they come from the selection state, saved every epoch, so a run killed before it wrote training.json
    loses none)."""
    keys = sorted({k for entry in valid_history for k in entry.get("terms", {})})
    return {k: [entry.get("terms", {}).get(k) for entry in valid_history] for k in keys}


def selection_view(config: ModelConfig) -> str:
    """The view whose valid figure selects the epoch: SDSR's single towers (the only ones it trains), SyNCRec's
    `selection_view`, and a model with one view its own."""
    if config.mode == "sdsr":
        return "single"
    return config.selection_view if config.architecture == "syncrec" else "cross"


def apply_prediction_towers(
    model, config: ModelConfig, examples_dir: str, vocabulary: Vocabulary, protocol: EvalProtocol
) -> dict | None:
    """`config.prediction_towers` applied to a SyNCRec model trained on both tasks (others have one tower: None).

    "valid": choose_prediction_towers (cross, single or both per domain); "cross": every domain from the cross tower
    (Eq. 19). Either way the variable is set, so the same finished run can be served under either setting."""
    if config.architecture != "syncrec" or config.mode != "syncrec":
        return None
    if config.prediction_towers == "cross":
        model.prediction_tower.assign([0] * vocabulary.num_domains)
        return None
    return choose_prediction_towers(model, examples_dir, vocabulary, protocol, config.tower_choice_margin)


def choose_prediction_towers(
    model, examples_dir: str, vocabulary: Vocabulary, protocol: EvalProtocol, margin: float
) -> dict:
    """Set SyNCRec's `prediction_tower`: per domain, the view that beats the cross tower (Eq. 19) on valid NDCG@10 by
    the most, among its single tower and both towers summed, where that gain exceeds `margin` standard errors of the
    paired per-user gain (and anything at all); else the cross tower.

    Training selected the epoch on one view (`selection_view`); this is a second choice on the same valid split,
    made once, on the selected weights (the test split is never looked at). Every view ranks the same users against
    the same candidates, so a gain is paired per user: its standard error shrinks with the valid split, and a
    win that a few hundred users' noise would explain keeps the cross tower. Returns {domain: {"tower",
    "cross", "single", "both" (valid NDCG@10), "gain" and "standard_error" (single over cross: negative transfer,
    pipeline.blessing reads it), "gain_both", "standard_error_both", "users"}} for training.json."""
    from model_keras.model import TOWERS

    scorer = ModelScorer(model, ("cross", "single", "both"))  # every view in one pass (each encoder traced once)
    towers = rank_users_by_view(scorer, examples_dir, "valid", vocabulary, protocol)
    choice = {}
    for d in vocabulary.domains:
        ranks = {view: towers[view].in_domain(d.domain_id) for view in towers}
        gains = {view: paired_gain(ranks["cross"], ranks[view], k=SELECTION_K) for view in ("single", "both")}
        winners = {view: gain for view, (gain, se) in gains.items() if gain > 0 and gain > margin * se}
        finite = lambda se: se if math.isfinite(se) else None  # noqa: E731 (None: under two users)
        choice[d.name] = {
            "tower": max(winners, key=winners.get) if winners else "cross",
            **{view: rank_metrics(ranks[view])[SELECTION_METRIC] for view in towers},
            "gain": gains["single"][0],
            "standard_error": finite(gains["single"][1]),
            "gain_both": gains["both"][0],
            "standard_error_both": finite(gains["both"][1]),
            "users": int(ranks["cross"].size),
        }
    model.prediction_tower.assign([TOWERS.index(choice[d.name]["tower"]) for d in vocabulary.domains])
    return choice


def run_fn(
    examples_dir: str,
    output_dir: str,
    config: ModelConfig,
    warm_start: str | None = None,
    protocol: EvalProtocol = EvalProtocol(),
    verbose: int = 1,
    export: bool = True,
    callbacks: list | tuple = (),
) -> dict:
    """Train, select on valid (early stopping), export. Works for SyNCRec and every baseline.

    Args:
        examples_dir: a finished transform output (components.transform).
        output_dir: where checkpoints, the selected weights, logs and the SavedModel go; a run found
            there is resumed (or, when finished, reused without training).
        config: the model settings; sizes from the data are filled in here.
        warm_start: an exported SavedModel to copy weights from (when not resuming).
        protocol: the validation protocol used for selection.
        callbacks: more Keras callbacks; they run after validation, so logs hold val_HR@10, val_NDCG@10, val_MRR.
    Returns:
        The summary written to training.json (best and last epoch, valid metrics, histories), plus
        "model": the model holding the selected weights.
    Raises:
        TrainingDiverged: the loss became NaN or infinite (nothing is exported).
    """
    require_complete_examples(examples_dir)
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    tf.keras.utils.set_random_seed(config.seed)
    strategy = distribute.make_strategy(config.distribution)
    final_dir, chief = output_dir, distribute.is_chief()
    if not chief:  # every worker saves (collectives need them all), only the chief into the real folder
        output_dir = os.path.join(output_dir, f".worker-{distribute.worker()[0]}")
    batches = lambda size: make_dataset(
        examples_dir, "train", vocabulary.num_domains, size, shuffle=True, seed=config.seed, sort_window=config.sort_window
    )  # noqa: E731
    sample = next(iter(batches(config.batch_size)))
    examples_t = int(sample["item"].shape[1])
    if config.max_len not in (examples_t, ModelConfig.max_len):
        print(
            f"max_len: the examples hold T = {examples_t}, not the {config.max_len} asked for; training with "
            f"T = {examples_t} (transform with --max-len {config.max_len} to train with it)",
            file=sys.stderr,
        )
    fit_to_data(config, vocabulary, sample)
    with strategy.scope():
        model = build_model(config, vocabulary, sample)
    use_popularity_proposal(model, config, examples_dir, vocabulary)
    train, steps = batches(config.batch_size), None
    if config.distribution != "none":
        with open(os.path.join(examples_dir, "stats.json"), encoding="utf-8") as handle:
            train_examples = json.load(handle)["examples"]["train"]
        train, steps = distribute.distributed_dataset(strategy, batches, config.batch_size, train_examples)
    os.makedirs(output_dir, exist_ok=True)
    checkpoint, manager = _restore_or_warm_start(model, vocabulary, output_dir, warm_start)
    view = selection_view(config)
    validation = ValidationCallback(
        examples_dir, vocabulary, protocol, view, os.path.join(output_dir, "best"), config.patience, config.min_epochs
    )
    save_epoch = tf.keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (checkpoint.epoch.assign(epoch + 1), manager.save())
    )
    callbacks = [
        validation,
        LearningRateSchedule(config, validation),
        *callbacks,
        save_epoch,
        tf.keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), update_freq="epoch"),
    ]
    initial_epoch, started = int(checkpoint.epoch.numpy()), time.time()
    validation.resume_at(initial_epoch)
    epochs_run = 0
    if config.epochs > initial_epoch and not validation.state["stopped_early"]:
        epochs_run = _fit(model, train, config, initial_epoch, callbacks, verbose, steps)
    seconds = time.time() - started
    if not chief:  # the chief goes on alone: no collective op may follow
        shutil.rmtree(output_dir, ignore_errors=True)
        return {"config": config.to_dict(), "best_epoch": validation.state["best_epoch"], "model": None}
    if config.distribution != "none":  # the outputs come from a plain copy: no distributed variables in them
        model = build_model(config, vocabulary, sample)
    if validation.state["best_epoch"]:
        model.load_weights(best_weights(output_dir)).expect_partial()
        valid_result = validation.state["best_result"]
    else:  # no epoch trained (a warm start exported as it is)
        valid_result = evaluate(ModelScorer(model, view), examples_dir, "valid", vocabulary, protocol)
    _check_finite_weights(model)
    selection_result = valid_result
    towers = apply_prediction_towers(model, config, examples_dir, vocabulary, protocol)
    if towers is not None:
        valid_result = evaluate(ModelScorer(model), examples_dir, "valid", vocabulary, protocol)
    if validation.state["best_epoch"] and model.prediction_tower is not None:  # with the towers (load_trained reads them)
        keep_best_weights(model, validation.best_dir, validation.state, f"epoch-{validation.state['best_epoch']}-served")
    previous = _previous_summary(output_dir)
    summary = {
        "config": config.to_dict(),
        "protocol": protocol.describe(),
        "best_epoch": validation.state["best_epoch"],
        "last_epoch": initial_epoch + epochs_run,
        "stopped_early": validation.state["stopped_early"],
        "epochs_run": epochs_run,
        "train_seconds": round(seconds, 2),  # this invocation; the total covers the runs it resumed
        "train_seconds_total": round(
            previous.get("train_seconds_total", previous.get("train_seconds", 0.0)) + seconds, 2
        ),
        "valid": valid_result,  # what the model serves (with the towers chosen, if any)
        "valid_at_selection": selection_result,  # the view that selected the epoch (selection_view)
        "prediction_towers": towers,
        "valid_history": validation.state["history"],
        "loss_history": _loss_history(validation.state["history"]),
    }
    if export:
        _export(model, config, vocabulary, final_dir)
    _write_json(os.path.join(final_dir, "model_config.json"), config.to_dict())
    _write_json(os.path.join(final_dir, "training.json"), summary)
    return {**summary, "model": model}


def _export(model, config: ModelConfig, vocabulary: Vocabulary, output_dir: str) -> str:
    """The serving SavedModel, with the config, vocabulary and weights a warm start needs in assets.extra."""
    path = export_saved_model(
        model,
        config.max_len,
        vocabulary,
        os.path.join(output_dir, "saved_model"),
        {"model_config.json": config.to_dict(), "vocabulary.json": vocabulary.to_json()},
    )
    model.save_weights(os.path.join(path, "assets.extra", "checkpoint", "weights"))
    return path


def _write_json(path: str, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=1)


def load_trained(output_dir: str, examples_dir: str):
    """Rebuild a trained model from code + model_config.json + the selected weights (for evaluation)."""
    with open(os.path.join(output_dir, "model_config.json"), encoding="utf-8") as handle:
        config = ModelConfig.from_dict(json.load(handle))
    vocabulary = Vocabulary.load(os.path.join(examples_dir, "vocabulary.json"))
    sample = next(iter(make_dataset(examples_dir, "valid", vocabulary.num_domains, 2)))
    model = build_model(config, vocabulary, sample)
    model.load_weights(best_weights(output_dir)).expect_partial()
    return model


def add_protocol_flags(parser: argparse.ArgumentParser) -> None:
    """--negatives, --negatives-from, --full-ranking: the evaluation protocol (shared by the CLIs)."""
    parser.add_argument(
        "--negatives", type=int, default=EvalProtocol.num_negatives, help="sampled negatives per user (ABXI: 999)"
    )
    parser.add_argument(
        "--negatives-from",
        choices=POOLS,
        default=EvalProtocol.pool,
        help="draw negatives from the label's domain (default) or from all items (the official SyNCRec code)",
    )
    parser.add_argument(
        "--full-ranking", action="store_true", help="rank the label among all items of its domain instead"
    )


def protocol_from_args(args: argparse.Namespace) -> EvalProtocol:
    """EvalProtocol from --negatives, --negatives-from and --full-ranking."""
    return EvalProtocol(num_negatives=args.negatives, pool=args.negatives_from, full_ranking=args.full_ranking)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_keras.train", description=__doc__.splitlines()[0])
    parser.add_argument("--examples", required=True, help="output directory of components.transform")
    parser.add_argument("--output", required=True)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="model setting, e.g. --set epochs=5"
    )
    parser.add_argument(
        "--warm-start",
        default=None,
        help="an exported SavedModel (OUTPUT/saved_model or a pushed version) to start from",
    )
    add_protocol_flags(parser)
    args = parser.parse_args(argv)
    try:
        settings = {k.removeprefix("model."): v for k, v in parse_settings(args.set).items()}
        config = ModelConfig.from_dict(settings).validate_settings()
        protocol = protocol_from_args(args)
        require_complete_examples(args.examples)
        summary = run_fn(args.examples, args.output, config, args.warm_start, protocol)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary["model"] is None:
        print(f"worker {distribute.worker()[0]} done (the chief writes {args.output})")
        return 0
    print(
        format_metrics(summary["valid"], f"valid split, best epoch {summary['best_epoch']} of {summary['last_epoch']}")
    )
    if summary["prediction_towers"]:
        print(towers_line(summary["prediction_towers"]))
    print(f"wrote {args.output} (saved_model/, checkpoints/, best/, logs/, training.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
