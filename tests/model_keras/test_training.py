"""Training on the embedded sample, resume, and the exported serving signature."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from model_keras.config import ModelConfig
from model_keras.evaluation import PopularityScorer, evaluate
from model_keras.signatures import left_pad_history
from schemas.vocabulary import Vocabulary
from model_keras.input_fn import make_dataset
from model_keras.train import (
    TrainingDiverged,
    _export,
    best_weights,
    build_model,
    keep_best_weights,
    load_trained,
    run_fn,
)
from model_keras.warm_start import model_weights, warm_start

# No warm-up (tested on its own below): over the first epochs' low rates valid keeps rising, and the tests of early
# stopping and resumption would train twice as many epochs to see the same thing.
SMALL = dict(embed_dim=32, num_blocks=1, epochs=6, batch_size=64, learning_rate=2e-3, warmup_epochs=0)


@pytest.fixture(scope="module")
def trained(sample_examples, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained")
    summary = run_fn(str(sample_examples[0]), str(out), ModelConfig(**SMALL), verbose=0)
    return out, summary


@pytest.mark.slow
def test_training_lowers_every_loss_and_beats_popularity(trained, sample_examples, vocab):
    out, summary = trained
    history = summary["loss_history"]
    for term in ("loss", "single_loss", "cross_loss"):
        assert history[term][-1] < history[term][0], term
    assert "mim_loss" not in history  # the default leaves SC-MIM out of Eq. 18 (config.DEVIATIONS)
    popularity = evaluate(
        PopularityScorer.from_examples(str(sample_examples[0]), vocab), str(sample_examples[0]), "valid", vocab
    )
    assert summary["valid"]["all"]["NDCG@10"] > popularity["all"]["NDCG@10"]
    assert summary["valid"]["all"]["users"] == 500
    assert glob.glob(str(out / "logs" / "train" / "events.out.tfevents.*"))  # TensorBoard
    assert {f"lambda/{d}" for d in vocab.domain_names} <= set(history)


@pytest.mark.slow
def test_best_weights_reload_to_the_same_valid_metrics(trained, sample_examples, vocab):
    from model_keras.evaluation import ModelScorer

    out, summary = trained
    model = load_trained(str(out), str(sample_examples[0]))
    again = evaluate(ModelScorer(model), str(sample_examples[0]), "valid", vocab)
    assert again["all"]["NDCG@10"] == pytest.approx(summary["valid"]["all"]["NDCG@10"], abs=1e-6)


@pytest.mark.slow
def test_each_domain_is_served_by_the_tower_that_wins_on_valid(trained, sample_examples, vocab):
    """After selection, each domain gets its single tower or both towers summed only where that view's paired per-user
    valid NDCG@10 gain over the cross tower exceeds tower_choice_margin standard errors (the larger gain of the two
    wins); the choice is saved with the selected weights, and the reported valid metrics are the served ones."""
    from model_keras.model import TOWERS

    out, summary = trained
    towers = summary["prediction_towers"]
    margin = summary["config"]["tower_choice_margin"]
    assert set(towers) == set(vocab.domain_names) and margin == 2.0
    for name, choice in towers.items():
        assert choice["gain"] == pytest.approx(choice["single"] - choice["cross"], abs=1e-9)
        assert choice["gain_both"] == pytest.approx(choice["both"] - choice["cross"], abs=1e-9)
        assert choice["users"] == summary["valid"]["domains"][name]["users"] > 1
        gains = {"single": (choice["gain"], choice["standard_error"]), "both": (choice["gain_both"], choice["standard_error_both"])}
        wins = {view: g for view, (g, se) in gains.items() if g > 0 and g > margin * se}
        assert choice["tower"] == (max(wins, key=wins.get) if wins else "cross")
        selected_on = summary["config"]["selection_view"]  # the view whose valid figure selected the epoch
        assert choice[selected_on] == pytest.approx(summary["valid_at_selection"]["domains"][name]["NDCG@10"], abs=1e-9)
        served = summary["valid"]["domains"][name]["NDCG@10"]
        assert served == pytest.approx(choice[choice["tower"]], abs=1e-6)
    model = load_trained(str(out), str(sample_examples[0]))
    assert model.prediction_tower.numpy().tolist() == [TOWERS.index(towers[n]["tower"]) for n in vocab.domain_names]
    saved = json.loads((out / "training.json").read_text())
    assert saved["prediction_towers"] == towers


@pytest.mark.slow
def test_selection_reads_the_view_selection_view_names(sample_examples, vocab, tmp_path):
    """selection_view=both: each epoch's valid figure is the two towers summed, so the selected epoch is the best of
    that view and its figures are the "both" column of the tower choice made afterwards on the same weights; under
    the default (cross) they are the "cross" column, and the per-epoch figures are not the same."""
    config = ModelConfig(**dict(SMALL, epochs=4, selection_view="both", lr_plateau_patience=1))
    summary = run_fn(str(sample_examples[0]), str(tmp_path), config, verbose=0, export=False)
    history = [h["NDCG@10"] for h in summary["valid_history"]]
    assert history[summary["best_epoch"] - 1] == max(history) == summary["valid_at_selection"]["all"]["NDCG@10"]
    for name, choice in summary["prediction_towers"].items():
        assert choice["both"] == pytest.approx(summary["valid_at_selection"]["domains"][name]["NDCG@10"], abs=1e-9)
    cross = run_fn(
        str(sample_examples[0]),
        str(tmp_path / "cross"),
        ModelConfig(**dict(SMALL, epochs=4, lr_plateau_patience=1, selection_view="cross")),
        verbose=0,
        export=False,
    )
    assert [h["NDCG@10"] for h in cross["valid_history"]] != history
    for name, choice in cross["prediction_towers"].items():
        assert choice["cross"] == pytest.approx(cross["valid_at_selection"]["domains"][name]["NDCG@10"], abs=1e-9)


@pytest.mark.slow
def test_with_no_margin_any_valid_gain_takes_the_single_tower(trained, sample_examples, tmp_path):
    """tower_choice_margin=0 on the same finished run (no training): every domain where the single tower or both
    towers scored any higher valid NDCG@10 takes the better of them, the rest keep the cross tower; the margin only
    ever keeps the cross tower."""
    import shutil

    out, summary = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    again = run_fn(
        str(sample_examples[0]), str(copy), ModelConfig(**dict(SMALL, tower_choice_margin=0.0)), verbose=0, export=False
    )
    assert again["epochs_run"] == 0
    for name, choice in again["prediction_towers"].items():
        best = max(("single", "both"), key=lambda view: choice[view])
        assert choice["tower"] == (best if choice[best] > choice["cross"] else "cross")
        if summary["prediction_towers"][name]["tower"] != "cross":
            assert choice["tower"] == summary["prediction_towers"][name]["tower"]


@pytest.mark.slow
def test_a_finished_run_takes_the_other_tower_setting_without_training(trained, sample_examples, tmp_path):
    """prediction_towers is applied after training: the same finished run, asked for Eq. 19's cross tower, is reused
    (no epoch trained), serves every domain from the cross tower, and keeps that with its selected weights."""
    import shutil

    out, summary = trained
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    chosen = load_trained(str(copy), str(sample_examples[0]))
    chosen.prediction_tower.assign([1] * 5)  # as if every domain had chosen its single tower
    chosen.save_weights(best_weights(str(copy)))
    config = ModelConfig(**dict(SMALL, prediction_towers="cross"))
    again = run_fn(str(sample_examples[0]), str(copy), config, verbose=0, export=False)
    assert again["epochs_run"] == 0 and again["best_epoch"] == summary["best_epoch"]
    assert again["prediction_towers"] is None
    for name, choice in summary["prediction_towers"].items():  # the cross tower's figures on the same weights
        assert again["valid"]["domains"][name]["NDCG@10"] == pytest.approx(choice["cross"], abs=1e-9)
    assert load_trained(str(copy), str(sample_examples[0])).prediction_tower.numpy().tolist() == [0] * 5


@pytest.mark.slow
def test_the_saved_model_serves_the_chosen_towers(trained, sample_examples, vocab, tmp_path):
    """With some domains on their single tower and some on both towers summed, the SavedModel's score_items (fed
    whole histories, as clients send them) gives the Keras model's served scores: X^d is rebuilt in the graph exactly
    as the transform builds it."""
    from model_keras.evaluation import ModelScorer
    from model_keras.input_fn import make_dataset
    from pipeline.blessing import SavedModelScorer

    out, _ = trained
    model = load_trained(str(out), str(sample_examples[0]))
    model.prediction_tower.assign([d % 2 for d in range(vocab.num_domains - 1)] + [2])  # the last domain: both
    _export(model, model.config, vocab, str(tmp_path))
    saved = SavedModelScorer(str(tmp_path / "saved_model"), vocab)
    keras, cross = ModelScorer(model), ModelScorer(model, "cross")
    rng = np.random.default_rng(0)
    batch = next(iter(make_dataset(str(sample_examples[0]), "test", vocab.num_domains, batch_size=128)))
    ranges = [vocab.domains[d - 1] for d in batch["label_domain"].numpy()]
    candidates = np.stack([rng.integers(d.start + 1, d.end, size=20) for d in ranges]).astype(np.int32)
    expected = keras.score_candidates(batch, candidates)
    np.testing.assert_allclose(saved.score_candidates(batch, candidates), expected, rtol=1e-4, atol=1e-4)
    label = batch["label_domain"].numpy()
    both_rows = label == vocab.num_domains
    single_rows = (label % 2 == 0) & ~both_rows  # domain d is served by its single tower when d-1 is odd
    cross_rows = ~single_rows & ~both_rows
    assert single_rows.any() and cross_rows.any() and both_rows.any()
    by_cross = cross.score_candidates(batch, candidates)
    by_single = ModelScorer(model, "single").score_candidates(batch, candidates)
    assert np.abs(expected[single_rows] - by_cross[single_rows]).max() > 1e-2
    np.testing.assert_allclose(expected[single_rows], by_single[single_rows], atol=1e-5)
    np.testing.assert_allclose(expected[cross_rows], by_cross[cross_rows], atol=1e-5)
    np.testing.assert_allclose(expected[both_rows], (by_cross + by_single)[both_rows], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_the_saved_model_serves_a_cross_tower_per_domain(sample_examples, vocab, tmp_path):
    """With `cross_tower_per_domain`, each request is read by its target domain's cross tower: the SavedModel's
    scores for a batch mixing target domains are the Keras model's, and differ from another domain's tower's."""
    from model_keras.evaluation import ModelScorer
    from pipeline.blessing import SavedModelScorer

    batch = next(iter(make_dataset(str(sample_examples[0]), "test", vocab.num_domains, batch_size=64)))
    config = ModelConfig(**{**SMALL, "cross_tower_per_domain": True})
    config.num_items, config.num_domains, config.max_len = vocab.num_items, vocab.num_domains, 20
    model = build_model(config, vocab, batch)
    rng = np.random.default_rng(1)
    for variable in model.cross_tower.trainable_variables:  # towers that differ from domain to domain
        variable.assign(variable + rng.normal(0.0, 0.3, variable.shape).astype(np.float32))
    _export(model, config, vocab, str(tmp_path))
    ranges = [vocab.domains[d - 1] for d in batch["label_domain"].numpy()]
    assert len(set(batch["label_domain"].numpy().tolist())) > 1
    candidates = np.stack([rng.integers(d.start + 1, d.end, size=20) for d in ranges]).astype(np.int32)
    expected = ModelScorer(model).score_candidates(batch, candidates)
    saved = SavedModelScorer(str(tmp_path / "saved_model"), vocab).score_candidates(batch, candidates)
    np.testing.assert_allclose(saved, expected, rtol=1e-4, atol=1e-4)
    shifted = {**batch, "label_domain": vocab.num_domains + 1 - batch["label_domain"]}
    moved = batch["label_domain"].numpy() != shifted["label_domain"].numpy()
    other = ModelScorer(model, "cross").score_candidates(shifted, candidates)
    assert np.abs(other[moved] - expected[moved]).max() > 1e-3


@pytest.mark.slow
def test_id_signature_returns_top_k_of_the_target_domain(trained, vocab):
    out, _ = trained
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["recommend_ids"]
    assert set(serve.structured_outputs) == {"item_ids", "scores"}
    books, toys = vocab.domain("Books"), vocab.domain("Toys_and_Games")
    history = tf.constant(
        [[0, books.start + 1, toys.start + 2], [books.start + 3, books.start + 4, books.start + 5]], tf.int32
    )
    lengths = tf.constant([3, 3])
    result = serve(
        history_items=history,
        history_length=lengths,
        target_domain=tf.constant([toys.domain_id, books.domain_id], tf.int32),
        k=tf.constant([7, 7]),
    )
    ids, scores = result["item_ids"].numpy(), result["scores"].numpy()
    assert ids.shape == (2, 7) and scores.dtype == np.float32
    assert all(toys.start < i < toys.end for i in ids[0]) and all(books.start < i < books.end for i in ids[1])
    assert (np.diff(scores, axis=1) <= 0).all()
    assert serve(
        history_items=history, history_length=lengths, target_domain=tf.constant([1, 1], tf.int32), k=tf.constant([3, 3])
    )["item_ids"].shape == (2, 3)
    per_row = serve(
        history_items=history, history_length=lengths, target_domain=tf.constant([1, 1], tf.int32), k=tf.constant([2, 5])
    )
    assert per_row["item_ids"].shape == (2, 5)  # K is the largest k; row 0's places past its k are id 0 at -inf
    assert per_row["item_ids"].numpy()[0, 2:].tolist() == [0, 0, 0] and np.isneginf(per_row["scores"].numpy()[0, 2:]).all()
    np.testing.assert_array_equal(per_row["item_ids"].numpy()[1], result["item_ids"].numpy()[1][:5])
    config = json.loads((out / "saved_model" / "assets.extra" / "model_config.json").read_text())
    assert config["embed_dim"] == 32


def test_exported_top_k_is_the_exact_top_k_of_the_trained_model(trained, sample_examples, vocab):
    """The SavedModel's fast path (stacked experts, scoring the domain's slice of the table) gives what the trained Keras
    model computes item by item, through the tower it serves the domain with, with the history's items left out."""
    out, _ = trained
    model = load_trained(str(out), str(sample_examples[0]))
    serve = tf.saved_model.load(str(out / "saved_model")).signatures["recommend_ids"]
    books = vocab.domain("Books")
    history = tf.constant([[books.start + 1, books.start + 2, books.start + 3, books.start + 4]], tf.int32)
    got = serve(
        history_items=history, history_length=tf.constant([4]), target_domain=tf.constant([books.domain_id]), k=tf.constant([10])
    )
    padded = left_pad_history(history, model.config.max_len)  # every item is a Books item: X = X^Books
    user = model.served_representation(padded, padded, tf.constant([books.domain_id]))  # the tower Books was given
    scores = model.score_domain(user, tf.constant([books.domain_id])).numpy()[0]
    scores[history.numpy()[0]] = -np.inf
    expected = np.argsort(-scores, kind="stable")[:10]
    assert got["item_ids"].numpy()[0].tolist() == expected.tolist()
    np.testing.assert_allclose(got["scores"].numpy()[0], scores[expected], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_string_signatures_agree_with_the_id_signature(trained, vocab):
    out, _ = trained
    loaded = tf.saved_model.load(str(out / "saved_model"))
    books, toys = vocab.domain("Books"), vocab.domain("Toys_and_Games")
    raw = [[books.items[0], toys.items[1], ""], [books.items[2], books.items[3], books.items[4]]]
    raw_domains = [["Books", "Toys_and_Games", ""], ["Books"] * 3]
    ids = [[books.start + 1, toys.start + 2, 0], [books.start + 3, books.start + 4, books.start + 5]]
    by_name = loaded.signatures["serving_default"](
        history_items=tf.constant(raw),
        history_domains=tf.constant(raw_domains),
        history_length=tf.constant([3, 3]),
        target_domain=tf.constant(["Toys_and_Games", "Books"]),
        k=tf.constant([5, 5]),
    )
    by_id = loaded.signatures["recommend_ids"](
        history_items=tf.constant(ids, tf.int32),
        history_length=tf.constant([3, 3]),
        target_domain=tf.constant([toys.domain_id, books.domain_id], tf.int32),
        k=tf.constant([5, 5]),
    )
    names = [[vocab.item_name(int(i)) for i in row] for row in by_id["item_ids"].numpy()]
    assert [[x.decode() for x in row] for row in by_name["item_ids"].numpy()] == names
    np.testing.assert_allclose(by_name["scores"], by_id["scores"], rtol=1e-5)
    # score_items gives the same scores for those items; an unknown item scores as its domain's OOV
    scored = loaded.signatures["score_items"](
        history_items=tf.constant(raw),
        history_domains=tf.constant(raw_domains),
        history_length=tf.constant([3, 3]),
        target_domain=tf.constant(["Toys_and_Games", "Books"]),
        candidate_items=tf.constant([n[:2] for n in names]),
    )
    np.testing.assert_allclose(scored["scores"], by_id["scores"].numpy()[:, :2], rtol=1e-5)
    unknown = loaded.signatures["score_items"](
        history_items=tf.constant([["never-seen"]]),
        history_domains=tf.constant([["Books"]]),
        history_length=tf.constant([1]),
        target_domain=tf.constant(["Books"]),
        candidate_items=tf.constant([["also-unknown", "[OOV:Books]"]]),
    )
    assert np.isfinite(unknown["scores"].numpy()).all()
    with pytest.raises(tf.errors.InvalidArgumentError, match="known domains"):
        loaded.signatures["serving_default"](
            history_items=tf.constant([["x"]]),
            history_domains=tf.constant([["Books"]]),
            history_length=tf.constant([1]),
            target_domain=tf.constant(["Cars"]),
            k=tf.constant([3]),
        )


@pytest.mark.slow
def test_saved_model_cli_shows_the_signature(trained):
    out, _ = trained
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run(
        [cli, "show", "--dir", str(out / "saved_model"), "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    for name in ("history_items", "target_domain", "item_ids", "scores"):
        assert name in shown.stdout


@pytest.mark.slow
class StopAfterValidation(tf.keras.callbacks.Callback):
    """Stands for a killed process: raises after epoch `epoch`'s selection state is saved, before its checkpoint."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("killed")


def test_resume_continues_from_the_last_epoch(sample_examples, vocab, tmp_path):
    config = dict(SMALL, epochs=2)
    with pytest.raises(KeyboardInterrupt):
        run_fn(
            str(sample_examples[0]), str(tmp_path), ModelConfig(**config), verbose=0, callbacks=[StopAfterValidation(2)]
        )
    assert not (tmp_path / "training.json").exists()  # killed before the summary
    second = run_fn(str(sample_examples[0]), str(tmp_path), ModelConfig(**config), verbose=0, export=False)
    # epoch 2 ran again from the epoch-1 checkpoint; it is listed once, and epoch 1's losses are kept
    assert second["epochs_run"] == 1 and second["last_epoch"] == 2
    assert [h["epoch"] for h in second["valid_history"]] == [1, 2]
    assert len(second["loss_history"]["loss"]) == 2 and all(x > 0 for x in second["loss_history"]["loss"])
    assert all(len(second["loss_history"][f"lambda/{d}"]) == 2 for d in vocab.domain_names)
    # a finished run found again trains nothing and comes back with its selected weights
    third = run_fn(str(sample_examples[0]), str(tmp_path), ModelConfig(**config), verbose=0, export=False)
    assert third["epochs_run"] == 0 and third["best_epoch"] == second["best_epoch"]
    assert third["loss_history"] == second["loss_history"]
    # the time spent is kept across resumes (a rerun that trains nothing does not reset it to 0)
    assert third["train_seconds_total"] == second["train_seconds_total"] > 0
    assert third["valid"]["all"]["NDCG@10"] == pytest.approx(second["valid"]["all"]["NDCG@10"], abs=1e-9)


def test_a_run_killed_while_keeping_its_best_weights_still_names_readable_ones(tmp_path, monkeypatch):
    """A checkpoint is an index and a data file written in turn; a kill between the two used to leave the best
    epoch's weights unreadable (a resumed run then failed at its end). The new weights go under a new name and the
    state names them only once they are complete: a kill mid-save leaves the previous best, intact."""
    model = tf.keras.Sequential([tf.keras.layers.Dense(3, input_shape=(2,))])
    best_dir, state = str(tmp_path / "best"), {"best_epoch": 1}
    keep_best_weights(model, best_dir, state, "epoch-1")
    first = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in first])
    original = tf.keras.Model.save_weights

    def killed_mid_save(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        with open(f"{path}.data-00000-of-00001", "r+b") as handle:  # as if the data file were half rewritten
            handle.write(b"\0" * 16)
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.keras.Model, "save_weights", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        keep_best_weights(model, best_dir, dict(state, best_epoch=2), "epoch-2")
    monkeypatch.undo()
    restored = tf.keras.Sequential([tf.keras.layers.Dense(3, input_shape=(2,))])
    restored.load_weights(best_weights(str(tmp_path))).expect_partial()
    assert all(np.array_equal(a, b) for a, b in zip(restored.get_weights(), first))
    # a completed save replaces the older weights, and the same epoch saved again (its towers) is a new name too
    keep_best_weights(model, best_dir, state, "epoch-2")
    keep_best_weights(model, best_dir, state, "epoch-2")
    assert sorted(p.name for p in (tmp_path / "best").iterdir() if p.is_dir()) == ["epoch-2-again"]
    restored.load_weights(best_weights(str(tmp_path))).expect_partial()
    assert all(np.array_equal(a, b + 1) for a, b in zip(restored.get_weights(), first))


def test_left_pad_history_adds_sos_and_keeps_the_most_recent():
    out = left_pad_history(tf.constant([[0, 0, 5, 6], [7, 0, 8, 9], [0, 0, 0, 0]]), 3).numpy()
    assert out.tolist() == [[1, 5, 6], [7, 8, 9], [0, 0, 1]]


def test_train_cli_names_a_missing_examples_dir(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "model_keras.train", "--examples", str(tmp_path), "--output", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        result.returncode == 2
        and "run `python -m components.transform" in result.stderr
        and "Traceback" not in result.stderr
    )


@pytest.mark.slow
def test_early_stopping_keeps_the_best_epoch_and_says_so(sample_examples, tmp_path):
    """Patience stops a run once `patience` epochs pass without a better valid figure, but never before the floor
    (`min_epochs`): one run shows both, since on the sample its patience runs out before the floor (a model can sit
    on a plateau after a fast first epoch and climb later)."""
    floor, patience = 6, 2
    summary = run_fn(
        str(sample_examples[0]),
        str(tmp_path),
        ModelConfig(**dict(SMALL, epochs=30, patience=patience, min_epochs=floor)),
        verbose=0,
        export=False,
    )
    history = [h["NDCG@10"] for h in summary["valid_history"]]
    assert summary["stopped_early"] and summary["last_epoch"] == max(floor, summary["best_epoch"] + patience) < 30
    # the floor held the run: before it, some epoch was already `patience` epochs past the best one so far
    held = [e for e in range(1, floor) if e - (1 + int(np.argmax(history[:e]))) >= patience]
    assert held, history
    assert history[summary["best_epoch"] - 1] == max(history) == summary["valid_at_selection"]["all"]["NDCG@10"]
    # each epoch's line has every domain's figures too, and the selected epoch's are the ones selection kept
    selected = summary["valid_history"][summary["best_epoch"] - 1]["domains"]
    kept = summary["valid_at_selection"]["domains"]
    assert set(selected) == set(kept) and len(selected) > 1
    assert all(selected[d]["NDCG@10"] == kept[d]["NDCG@10"] and selected[d]["users"] == kept[d]["users"] for d in kept)
    assert all(set(entry["domains"]) == set(kept) for entry in summary["valid_history"])


@pytest.mark.slow
def test_a_diverged_run_stops_with_a_clear_error_and_exports_nothing(trained, sample_examples, tmp_path):
    out, summary = trained
    model = summary["model"]
    weights = model.get_weights()
    model.set_weights([np.full_like(w, np.nan) for w in weights])  # a model that diverged
    broken = _export(
        model, model.config, Vocabulary.load(str(sample_examples[0] / "vocabulary.json")), str(tmp_path / "broken")
    )
    model.set_weights(weights)
    with pytest.raises(TrainingDiverged, match="training diverged.*lower learning_rate"):
        run_fn(
            str(sample_examples[0]),
            str(tmp_path / "next"),
            ModelConfig(**dict(SMALL, epochs=1)),
            warm_start=broken,
            verbose=0,
        )
    assert not (tmp_path / "next" / "saved_model").exists()


@pytest.mark.slow
def test_warm_start_pairs_every_weight_across_loss_settings(trained, sample_examples, vocab, tmp_path):
    """A retraining with SC-MIM on warm-starts from a model trained without it (the default): the extra loss
    term's tracker must not shift which weight is copied into which."""
    _out, summary = trained
    source = summary["model"]
    exported = _export(source, source.config, vocab, str(tmp_path))
    sample = next(iter(make_dataset(str(sample_examples[0]), "train", vocab.num_domains, 8)))
    target = build_model(ModelConfig.from_dict({**source.config.to_dict(), "use_sc_mim": True}), vocab, sample)
    assert len(target.weights) > len(source.weights)  # one more loss tracker
    assert warm_start(target, vocab, exported)["variables_skipped"] == 0
    for new, old in zip(model_weights(target), model_weights(source), strict=True):
        np.testing.assert_array_equal(new.numpy(), old.numpy(), err_msg=new.name)


def test_warm_up_and_plateau_decay_of_the_learning_rate(sample_examples):
    """The rate rises over warmup_epochs, then falls by lr_plateau_factor after lr_plateau_patience epochs without
    a better valid NDCG@10 (read from the selection state, where the last decay is kept for a resume)."""
    from model_keras.train import LearningRateSchedule, build_model
    from model_keras.input_fn import make_dataset
    from schemas.vocabulary import Vocabulary

    config = ModelConfig(**dict(SMALL, warmup_epochs=2, lr_plateau_patience=2, weight_decay=1e-3))
    vocab = Vocabulary.load(str(sample_examples[0] / "vocabulary.json"))
    sample = next(iter(make_dataset(str(sample_examples[0]), "valid", vocab.num_domains, 2)))
    config.num_items, config.num_domains, config.max_len = vocab.num_items, vocab.num_domains, int(sample["item"].shape[1])
    model = build_model(config, vocab, sample)
    assert type(model.optimizer).__name__ == "AdamW"  # weight_decay > 0

    class Selection:  # what ValidationCallback keeps: the best epoch so far is epoch 2
        state = {"best_epoch": 2}

        def _save_state(self):
            pass

    schedule = LearningRateSchedule(config, Selection())
    schedule.set_model(model)
    rates = []
    for epoch in range(7):
        schedule.on_epoch_begin(epoch)
        rates.append(float(model.optimizer.learning_rate.numpy()))
        schedule.on_epoch_end(epoch)
    lr, factor = config.learning_rate, config.lr_plateau_factor
    np.testing.assert_allclose(rates, [lr / 2, lr, lr, lr, lr * factor, lr * factor, lr * factor**2], rtol=1e-5)
    assert Selection.state["last_lr_decay"] == 6


@pytest.mark.slow
def test_training_and_evaluation_trace_the_model_once(sample_examples, vocab):
    """Tracing a SyNCRec step or forward pass takes seconds, so each is traced once: fit's step although the
    optimizer's slots are made on first use, and each scoring function although a split's last batch is smaller."""
    from model_keras.evaluation import ModelScorer

    examples = str(sample_examples[0])
    train = make_dataset(examples, "train", vocab.num_domains, batch_size=192)
    assert len({int(batch["item"].shape[0]) for batch in train}) > 1  # a smaller last batch
    config = ModelConfig(**{**SMALL, "epochs": 1})
    config.num_items, config.num_domains, config.max_len = vocab.num_items, vocab.num_domains, 20
    model = build_model(config, vocab, next(iter(train)))
    model.fit(train, epochs=1, verbose=0)
    assert model.train_function.experimental_get_tracing_count() == 1
    scorer = ModelScorer(model)
    result = evaluate(scorer, examples, "valid", vocab)  # 500 users in batches of 256
    assert result["all"]["users"] == 500 and scorer._candidates.experimental_get_tracing_count() == 1
