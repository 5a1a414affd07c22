"""Eq. 8-18 on hand-made tensors, and the model-level properties (PAD, lambda state, variants)."""

import numpy as np
import pytest
import tensorflow as tf

from model_keras import losses
from model_keras.config import ModelConfig
from model_keras.warm_start import model_weights


def test_pairwise_losses_match_their_formulas():
    pos, neg = tf.constant([2.0, -1.0]), tf.constant([0.5, 0.5])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(losses.pairwise_loss(pos, neg, "bpr"), -np.log(sig(np.array([1.5, -1.5]))), rtol=1e-5)
    np.testing.assert_allclose(
        losses.pairwise_loss(pos, neg, "bce"), -np.log(sig(np.array([2.0, -1.0]))) - np.log(1 - sig(0.5)), rtol=1e-5
    )
    np.testing.assert_allclose(
        losses.pairwise_loss(pos, neg, "eq8"), -np.log(sig(sig(np.array([2.0, -1.0])) - sig(0.5))), rtol=1e-5
    )
    with pytest.raises(ValueError):
        losses.pairwise_loss(pos, neg, "hinge")


def test_negatives_come_from_the_target_domain_without_oov():
    start, count = tf.constant([0, 3, 10]), tf.constant([0, 6, 2])  # domain 1: ids 3..8, domain 2: 10..11
    domains = tf.constant([[1, 2, 0] * 500])
    neg = losses.sample_negatives(domains, start, count).numpy()[0]
    assert set(neg[0::3]) == set(range(3, 9)) and set(neg[1::3]) == {10, 11} and set(neg[2::3]) == {0}


def test_masked_positions_change_no_domain_mean():
    values = tf.constant([[1.0, 3.0, np.nan], [5.0, np.inf, 7.0]])
    domains = tf.constant([[1, 1, 2], [2, 0, 1]])
    mask = tf.constant([[True, True, False], [True, False, True]])
    means, counts = losses.domain_means(values, domains, mask, 2)
    np.testing.assert_allclose(means, [11 / 3, 5.0])
    np.testing.assert_allclose(counts, [3, 1])


def test_ntg_is_single_minus_cross_per_domain():
    single = tf.constant([[1.0, 2.0, 4.0]])
    cross = tf.constant([[0.5, 3.0, 1.0]])
    phi = losses.negative_transfer_gap(single, cross, tf.constant([[1, 2, 1]]), tf.constant([[True, True, True]]), 2)
    np.testing.assert_allclose(phi, [(0.5 + 3.0) / 2, -1.0])


def test_relative_ntg_moves_lambda_away_from_a_negative_transfer_domain():
    previous = tf.fill([3], 1 / 3)
    neutral = losses.relative_ntg(previous, tf.zeros(3), 1.0, 1.0, 1.0)
    np.testing.assert_allclose(neutral, [1 / 3] * 3, rtol=1e-6)
    lam = losses.relative_ntg(previous, tf.constant([0.0, -2.0, 0.0]), 1.0, 1.0, 1.0).numpy()
    assert lam[1] < 1 / 3 < lam[0] == pytest.approx(lam[2])
    assert lam.sum() == pytest.approx(1.0)
    hotter = losses.relative_ntg(previous, tf.constant([0.0, -2.0, 0.0]), 1.0, 1.0, 10.0).numpy()
    assert lam[1] < hotter[1] < 1 / 3  # a higher temperature delta flattens lambda


def test_reductions_match_their_formulas():
    values = tf.constant([[1.0, 3.0, np.nan], [5.0, np.inf, 7.0]])  # 2 sequences; masked steps hold garbage
    domains = tf.constant([[1, 1, 2], [2, 0, 1]])
    mask = tf.constant([[True, True, False], [True, False, True]])
    reduce = lambda how, w=None: float(losses.reduce(values, domains, mask, 2, how, 2, w))  # noqa: E731
    assert reduce("sum") == pytest.approx((1 + 3 + 5 + 7) / 2)  # Eq. 8: per-sequence sums, mean over sequences
    assert reduce("mean") == pytest.approx((1 + 3 + 5 + 7) / 4)
    assert reduce("domain_mean") == pytest.approx(((1 + 3 + 7) / 3 + 5 / 1) / 2)
    weights = tf.constant([0.5, 2.0])  # LC-NTG: each step's loss times its domain's weight (Eq. 12)
    assert reduce("sum", weights) == pytest.approx((0.5 * (1 + 3 + 7) + 2.0 * 5) / 2)
    assert reduce("mean", weights) == pytest.approx((0.5 * (1 + 3 + 7) + 2.0 * 5) / 4)
    # ABXI's: each sequence's mean per domain ((1+3)/2 and 7; none, and 5), over the 2 sequences, summed over domains
    assert reduce("sequence_domain_mean") == pytest.approx(((1 + 3) / 2 + 7) / 2 + (0 + 5) / 2)
    assert reduce("sequence_domain_mean", weights) == pytest.approx(0.5 * ((1 + 3) / 2 + 7) / 2 + 2.0 * 5 / 2)
    with pytest.raises(ValueError, match="loss_reduction"):
        reduce("median")


def test_lc_ntg_weights_are_lambda_or_mean_one():
    lam = tf.constant([0.5, 0.25, 0.25])
    np.testing.assert_allclose(losses.lc_ntg_weights(lam, "one"), [0.5, 0.25, 0.25])
    np.testing.assert_allclose(losses.lc_ntg_weights(lam, "domains"), [1.5, 0.75, 0.75])  # uniform lambda -> all 1


def test_ntg_sum_is_eq_10_per_sequence():
    single, cross = tf.constant([[1.0, 2.0, 4.0]]), tf.constant([[0.5, 3.0, 1.0]])
    args = (single, cross, tf.constant([[1, 2, 1]]), tf.constant([[True, True, True]]), 2)
    np.testing.assert_allclose(losses.negative_transfer_gap(*args, reduction="sum", num_sequences=1), [0.5 + 3.0, -1.0])


def test_ntg_sequence_domain_mean_averages_each_sequences_domain_means():
    single, cross = tf.constant([[1.0, 2.0, 4.0], [2.0, 0.0, 0.0]]), tf.constant([[0.5, 3.0, 1.0], [1.0, 9.0, 9.0]])
    mask = tf.constant([[True, True, True], [True, False, False]])
    args = (single, cross, tf.constant([[1, 2, 1], [2, 0, 0]]), mask, 2)
    phi = losses.negative_transfer_gap(*args, reduction="sequence_domain_mean", num_sequences=2)
    np.testing.assert_allclose(phi, [(0.5 + 3.0) / 2 / 2, (-1.0 + 1.0) / 2])


def test_sc_mim_is_infonce_over_users_of_the_domain():
    single = tf.constant([[[1.0, 0.0]], [[0.0, 1.0]], [[9.0, 9.0]]])  # 3 users, 1 domain, r = 2
    cross = tf.constant([[[1.0, 0.0]], [[0.0, 1.0]], [[9.0, 9.0]]])
    present = tf.constant([[True], [True], [False]])  # user 3 has no position in the domain
    got = losses.sc_mim_loss(single, cross, present, tf.eye(2)).numpy()  # [D, B]
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rho = sig(np.array([[1.0, 0.0], [0.0, 1.0]]))  # rho[u, u'] = sigma(s_u' . c_u)
    expected = [np.log(np.exp(rho[u]).sum()) - rho[u, u] for u in range(2)]
    np.testing.assert_allclose(got[0, :2], expected, rtol=1e-5)


def test_pad_positions_change_no_loss(make_model, batch):
    """Whatever the PAD row of M holds, no loss term and no representation moves."""
    model = make_model(use_sc_mim=True)

    def run():
        tf.random.set_seed(11)  # the same negatives both times
        terms = model.compute_losses(batch, training=False)
        return {
            k: float(terms[k]) for k in ("loss", "single_loss", "cross_loss", "mim_loss")
        }, model.user_representation(batch["item"]).numpy()

    before, rep_before = run()
    table = model.embedding.items.embeddings
    table.assign(tf.tensor_scatter_nd_update(table, [[0]], [tf.fill([table.shape[1]], 7.0)]))
    after, rep_after = run()
    assert after == pytest.approx(before, rel=1e-5)
    np.testing.assert_allclose(rep_after, rep_before, atol=1e-5)


def test_train_step_updates_lambda_state_and_reports_every_term(make_model, batch, vocab):
    model = make_model(use_sc_mim=True)
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    assert np.all(model.ntg_lambda.numpy() == 0)  # Eq. 11: lambda starts at 0
    logs = model.train_on_batch(batch, return_dict=True)
    assert {"loss", "single_loss", "cross_loss", "mim_loss"} <= set(logs)
    assert {f"phi/{d}" for d in vocab.domain_names} <= set(logs) and {f"lambda/{d}" for d in vocab.domain_names} <= set(
        logs
    )
    assert model.ntg_lambda.numpy().sum() == pytest.approx(1.0)
    assert any(w is model.ntg_lambda for w in model.non_trainable_weights)
    trainable = {id(w) for w in model.trainable_weights}
    assert not {id(model.ntg_alpha), id(model.ntg_beta)} & trainable  # fixed by default (bounded lambda)
    assert id(model.ntg_log_temperature) not in trainable  # delta is a fixed temperature in the paper
    learned = make_model(learn_temperature=True, learn_ntg_coefficients=True)  # Eq. 11 as in the paper
    assert {id(learned.ntg_alpha), id(learned.ntg_beta), id(learned.ntg_log_temperature)} <= {
        id(w) for w in learned.trainable_weights
    }
    paper = ModelConfig.from_dict({"preset": "paper"})
    assert paper.learn_ntg_coefficients and not ModelConfig().learn_ntg_coefficients


def test_variants_change_the_total_loss(make_model, batch):
    tf.keras.utils.set_random_seed(1)
    full = make_model(eta=0.5, use_sc_mim=True)

    def total(**overrides):
        model = make_model(eta=0.5, **overrides)
        for new, old in zip(model_weights(model), model_weights(full), strict=True):  # not the loss trackers
            new.assign(old)
        tf.random.set_seed(3)
        return model.compute_losses(batch, training=False)

    tf.random.set_seed(3)
    terms = full.compute_losses(batch, training=False)
    assert float(terms["loss"]) == pytest.approx(
        0.5 * float(terms["single_loss"] + terms["cross_loss"]) + 0.5 * float(terms["mim_loss"]), rel=1e-5
    )
    no_mim = total(use_sc_mim=False)  # the default: no step computes SC-MIM's InfoNCE, none reports it
    assert "mim_loss" not in no_mim and "mim_loss" not in make_model(eta=0.5).loss_names()
    assert float(no_mim["loss"]) == pytest.approx(0.5 * float(no_mim["single_loss"] + no_mim["cross_loss"]), rel=1e-5)
    assert not ModelConfig().use_sc_mim and ModelConfig.from_dict({"preset": "paper"}).use_sc_mim
    sdsr = total(mode="sdsr")
    assert float(sdsr["loss"]) == pytest.approx(float(sdsr["single_loss"]), rel=1e-6)


def test_keras_3_is_refused_with_the_fix():
    import subprocess
    import sys

    code = "import tensorflow as tf; tf.keras.layers.Dense; import model_keras.model"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in __import__("os").environ.items() if k != "TF_USE_LEGACY_KERAS"},
    )
    assert result.returncode != 0 and "Import model_keras first" in result.stderr


def test_without_lc_ntg_is_uniform_lambda_and_nothing_else(make_model, batch):
    """'w/o LC-NTG' changes one thing: the cross loss's per-domain weights become uniform."""
    tf.keras.utils.set_random_seed(2)
    full = make_model(use_sc_mim=True)
    full.ntg_alpha.assign(0.0)
    full.ntg_beta.assign(0.0)  # lambda = softmax(0) = uniform
    ablated = make_model(use_lc_ntg=False, use_sc_mim=True)
    ablated.set_weights(full.get_weights())
    tf.random.set_seed(5)
    a = full.compute_losses(batch, training=False)
    tf.random.set_seed(5)
    b = ablated.compute_losses(batch, training=False)
    for term in ("loss", "single_loss", "cross_loss", "mim_loss"):
        assert float(a[term]) == pytest.approx(float(b[term]), rel=1e-6), term


def test_trimming_padding_changes_no_output(make_model, batch):
    """A batch of short histories is trimmed to its longest one; every real step's output is unchanged."""
    model = make_model()
    lengths = tf.reduce_sum(tf.cast(batch["item"] > 0, tf.int32), axis=1).numpy()
    short, longest = int(np.argmin(lengths)), int(np.argmax(lengths))
    one = {k: v[short : short + 1] for k, v in batch.items()}
    both = {k: tf.gather(v, [short, longest]) for k, v in batch.items()}
    y_one, y_both = model(one).numpy()[0], model(both).numpy()[0]
    real = lengths[short]
    assert y_one.shape[0] < y_both.shape[0]  # the short batch was trimmed
    np.testing.assert_allclose(y_one[-real:], y_both[-real:], atol=1e-5)
    np.testing.assert_allclose(
        model.user_representation(one["item"]), model.user_representation(both["item"])[:1], atol=1e-5
    )


@pytest.mark.parametrize("causal", [False, True])
def test_causal_gates_do_not_see_the_targets(make_model, batch, causal):
    """Eq. 3's gate reads the whole sequence, so step t's output moves with input t+1 (its target);
    with causal gates no output at steps <= t depends on anything after t, as at inference."""
    model = make_model(causal_gates=causal)
    lengths = tf.reduce_sum(tf.cast(batch["item"] > 0, tf.int32), axis=1).numpy()
    row = int(np.argmax(lengths))
    features = {k: v[row : row + 1] for k, v in batch.items()}
    t = features["item"].shape[1] - 3  # change the input two steps before the end
    changed = dict(features, item=tf.tensor_scatter_nd_update(features["item"], [[0, t]], [features["item"][0, t] + 1]))
    moved = np.abs(model(changed).numpy()[0, :t] - model(features).numpy()[0, :t]).max()
    assert (moved < 1e-6) if causal else (moved > 1e-4)


def test_causal_gate_at_the_last_step_is_eq_3s_gate(make_model, batch):
    model = make_model(causal_gates=True)
    e = model.embed(batch["item"])[:, tf.newaxis]
    np.testing.assert_allclose(
        model.acmoe.cross_gate(e, causal=True)[:, 0, -1], model.acmoe.cross_gate(e, causal=False)[:, 0], atol=1e-6
    )


@pytest.mark.parametrize("architecture", ["syncrec", "syncrec, a cross tower per domain", "sasrec"])
def test_inference_computes_the_last_step_of_the_training_path(make_model, batch, vocab, architecture):
    """user_representation runs the final block for the last query only: the same numbers as the full pass."""
    if architecture.startswith("syncrec"):
        per_domain = architecture.endswith("per domain")
        model = make_model(cross_tower_per_domain=per_domain)
        full = model(batch)[:, -1]
        if per_domain:  # the tower of the last target's domain, at training and at inference alike
            last_domain = batch["target_domain"][:, -1]
            np.testing.assert_allclose(model.cross_representation(batch["item"], last_domain), full, atol=1e-5)
            other = vocab.num_domains + 1 - last_domain  # another domain's tower reads the same history otherwise
            assert np.abs(model.cross_representation(batch["item"], other).numpy() - full.numpy()).max() > 1e-3
            with pytest.raises(ValueError, match="needs the target domain"):
                model.user_representation(batch["item"])
            return
    else:
        from model_keras.baselines import SASRec
        from model_keras.config import ModelConfig

        config = ModelConfig(
            num_items=vocab.num_items,
            num_domains=vocab.num_domains,
            max_len=20,
            embed_dim=16,
            num_blocks=2,
            dropout=0.0,
            architecture="sasrec",
        )
        model = SASRec(config, [(d.start, d.end) for d in vocab.domains], vocab.domain_names).build_for(batch)
        full = model.encode_sequence(batch["item"])[:, -1]
    np.testing.assert_allclose(model.user_representation(batch["item"]), full, atol=1e-5)


def test_sampled_softmax_is_the_cross_entropy_over_the_target_and_its_valid_negatives():
    from model_keras.losses import sampled_softmax_loss

    pos = tf.constant([2.0, 0.5])
    neg = tf.constant([[1.0, 0.0, 3.0], [0.5, -1.0, 0.0]])
    valid = tf.constant([[True, True, False], [True, True, True]])  # row 0's third negative is the target itself
    got = sampled_softmax_loss(pos, neg, valid, temperature=0.5).numpy()
    row0 = -np.log(np.exp(4.0) / (np.exp(4.0) + np.exp(2.0) + np.exp(0.0)))
    row1 = -np.log(np.exp(1.0) / (np.exp(1.0) + np.exp(1.0) + np.exp(-2.0) + np.exp(0.0)))
    np.testing.assert_allclose(got, [row0, row1], rtol=1e-5)


def test_the_logq_correction_subtracts_each_items_log_proposal():
    from model_keras.losses import sampled_softmax_loss

    pos, neg = tf.constant([2.0]), tf.constant([[1.0, 0.0]])
    valid = tf.constant([[True, True]])
    log_q = np.log([0.5, 0.1, 0.02]).astype(np.float32)  # the target, then the two negatives
    got = sampled_softmax_loss(pos, neg, valid, 1.0, tf.constant([log_q[0]]), tf.constant([log_q[1:]])).numpy()
    logits = np.array([2.0, 1.0, 0.0]) - log_q
    np.testing.assert_allclose(got, [np.log(np.exp(logits).sum()) - logits[0]], rtol=1e-5)


def test_full_softmax_is_the_cross_entropy_over_the_targets_domain():
    from model_keras.losses import full_softmax_loss

    rng = np.random.default_rng(0)
    table = rng.normal(size=(9, 4)).astype(np.float32)  # 0 PAD, 1 SOS, domain 1: OOV 2 and items 3-5, domain 2: OOV 6, 7-8
    rep = rng.normal(size=(2, 3, 4)).astype(np.float32)
    targets = np.array([[3, 8, 0], [5, 7, 4]])
    domains = np.array([[1, 2, 0], [1, 2, 1]])
    got = full_softmax_loss(tf.constant(rep), tf.constant(table), tf.constant(targets), tf.constant(domains),
                            [(3, 6), (7, 9)], temperature=0.5).numpy()
    for b in range(2):
        for t in range(3):
            if domains[b, t] == 0:
                assert got[b, t] == 0.0
                continue
            first, end = [(3, 6), (7, 9)][domains[b, t] - 1]
            logits = table[first:end] @ rep[b, t] / 0.5
            expected = np.log(np.exp(logits).sum()) - logits[targets[b, t] - first]
            np.testing.assert_allclose(got[b, t], expected, rtol=1e-4, atol=1e-6)


def test_popularity_negatives_come_from_the_targets_domain_in_proportion_to_counts():
    model, vocab = _small_softmax_model(
        num_train_negatives=4000, softmax_sampling="popularity", softmax_negatives="batch"
    )
    counts = np.zeros(vocab.num_items)
    popular = {d.domain_id: d.start + 1 for d in vocab.domains}
    for d in vocab.domains:
        counts[d.start + 1 : d.end] = 1
        counts[popular[d.domain_id]] = 99  # drawn (99 + 1) / (2 * (n - 1) + 98) of the time
    model.set_item_counts(counts)
    negatives = model.shared_negatives(salt=1).numpy()
    assert (negatives[0] == 0).all()
    for d in vocab.domains:
        drawn = negatives[d.domain_id]
        assert ((drawn > d.start) & (drawn < d.end)).all()
        expected = 100 / (100 + 2 * (d.end - d.start - 2))
        assert abs(np.mean(drawn == popular[d.domain_id]) - expected) < 0.05
        log_q = model.log_proposal(tf.range(d.start + 1, d.end)).numpy()
        np.testing.assert_allclose(np.exp(log_q).sum(), 1.0, rtol=1e-5)  # normalised over the domain's own items


@pytest.mark.slow
@pytest.mark.parametrize(
    "objective",
    [
        {"loss": "softmax"},
        {"loss": "softmax", "softmax_sampling": "popularity", "softmax_negatives": "batch"},
        {"loss": "softmax", "softmax_negatives": "batch"},
        {"loss": "full_softmax"},
        {"loss": "softmax", "softmax_negative_domains": "all", "loss_reduction": "sequence_domain_mean", "use_sc_mim": True},
    ],
    ids=["sampled", "popularity", "shared-by-batch", "full", "every-domain-per-sequence-mean"],
)
def test_every_model_trains_with_the_softmax_objectives(sample_examples, objective):
    """loss=softmax (uniform or popularity negatives) and loss=full_softmax reach every model through the shared
    position loss; two epochs of SyNCRec and SASRec lower the loss. Keras's fit alone: the objective lives in
    train_step, and run_fn's selection around it is tested with the default objective (test_training)."""
    from model_keras.input_fn import make_dataset
    from model_keras.train import build_model, fit_to_data, use_popularity_proposal
    from schemas.vocabulary import Vocabulary

    examples = str(sample_examples[0])
    vocabulary = Vocabulary.load(f"{examples}/vocabulary.json")
    for architecture in ("syncrec", "sasrec"):
        config = ModelConfig(
            architecture=architecture, num_train_negatives=16, epochs=2, embed_dim=8, max_len=20, warmup_epochs=0,
            dropout=0.0, **objective
        )
        train = make_dataset(examples, "train", vocabulary.num_domains, config.batch_size, shuffle=True)
        sample = next(iter(train))
        fit_to_data(config, vocabulary, sample)
        model = build_model(config, vocabulary, sample)
        use_popularity_proposal(model, config, examples, vocabulary)
        losses_ = model.fit(train, epochs=config.epochs, verbose=0).history["loss"]
        assert all(np.isfinite(losses_)) and losses_[1] < losses_[0], (architecture, losses_)
        if config.softmax_sampling == "popularity":  # the proposal came from the data, not the uniform start
            assert np.ptp(model.item_log_count.numpy()) > 0


def test_the_softmax_negatives_of_a_domain_are_its_own_items():
    model, vocab = _small_softmax_model(num_train_negatives=64)
    negatives = model.shared_negatives(salt=2).numpy()
    assert negatives.shape == (4, 64) and (negatives[0] == 0).all()  # PAD targets get PAD
    for d in vocab.domains:
        assert ((negatives[d.domain_id] > d.start) & (negatives[d.domain_id] < d.end)).all()  # OOV and others excluded


def _small_softmax_model(**settings):
    from model_keras.model import SyNCRec
    from model_keras.warm_start import dummy_batch
    from tests.serving.small_model import small_vocabulary

    vocab = small_vocabulary()
    config = ModelConfig(
        num_items=vocab.num_items, num_domains=3, max_len=10, embed_dim=8, num_blocks=1, num_experts=2,
        num_cross_experts=1, loss="softmax", **settings,
    )
    model = SyNCRec(config, [(d.start, d.end) for d in vocab.domains], vocab.domain_names)
    return model.build_for(dummy_batch(config)), vocab


def test_sequence_negatives_are_drawn_for_each_sequence_from_each_domain():
    model, vocab = _small_softmax_model(num_train_negatives=32, softmax_negatives="sequence")
    negatives = model.sequence_negatives(6, salt=1).numpy()
    assert negatives.shape == (6, 4, 32) and (negatives[:, 0] == 0).all()  # PAD targets get PAD
    for d in vocab.domains:
        drawn = negatives[:, d.domain_id]
        assert ((drawn > d.start) & (drawn < d.end)).all()  # the domain's own items, OOV excluded
        assert len({tuple(row) for row in drawn}) == 6  # a draw of its own for every sequence
    np.testing.assert_array_equal(model.sequence_negatives(6, salt=1), negatives)  # stateless: same step, same draw
    assert (model.sequence_negatives(6, salt=2).numpy() != negatives).any()


@pytest.mark.parametrize("negative_domains", ["target", "all"])
def test_the_sequence_softmax_leaves_out_the_target_and_the_sequences_own_items(negative_domains):
    """Against a loop over positions: each position's loss is the cross-entropy of its target against its
    sequence's negatives of the target's domain (of every real domain with softmax_negative_domains=all), minus
    those equal to any target of the same sequence; a PAD position's loss is exactly 0 (the loss scores no PAD
    row of negatives)."""
    model, vocab = _small_softmax_model(
        num_train_negatives=64, softmax_negatives="sequence", softmax_temperature=0.5,
        softmax_negative_domains=negative_domains,
    )
    rng = np.random.default_rng(0)
    first, second = vocab.domains[0], vocab.domains[1]
    # Few items a domain, so 64 draws hit the sequence's own items and the target: the exclusion is exercised.
    targets = np.array([[first.start + 1, first.start + 2, second.start + 1, 0], [second.start + 2, first.start + 1, 0, 0]])
    domains = np.array([[1, 1, 2, 0], [2, 1, 0, 0]])
    rep = rng.normal(size=(2, 4, 8)).astype(np.float32)
    got = model.sequence_softmax_loss(tf.constant(rep), tf.constant(targets), tf.constant(domains), salt=3).numpy()
    negatives = model.sequence_negatives(2, salt=3).numpy()
    table = model.embedding.item_table.numpy()
    left_out = 0
    for b in range(2):
        for t in range(4):
            if domains[b, t] == 0:
                assert got[b, t] == 0.0
                continue
            drawn = negatives[b, domains[b, t]] if negative_domains == "target" else negatives[b, 1:].ravel()
            kept = drawn[~np.isin(drawn, targets[b])]
            left_out += len(drawn) - len(kept)
            logits = np.concatenate([[table[targets[b, t]] @ rep[b, t]], table[kept] @ rep[b, t]]) / 0.5
            np.testing.assert_allclose(got[b, t], np.log(np.exp(logits).sum()) - logits[0], rtol=1e-4, atol=1e-5)
    assert left_out > 0


def test_sequence_negatives_with_popularity_sampling_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="softmax_sampling=uniform"):
        ModelConfig(loss="softmax", softmax_negatives="sequence", softmax_sampling="popularity").validate_settings()
    with pytest.raises(ValueError, match="softmax_negatives must be one of"):
        ModelConfig(softmax_negatives="position").validate_settings()
    with pytest.raises(ValueError, match="use it with softmax_negatives=sequence"):
        ModelConfig(softmax_negatives="batch", softmax_negative_domains="all").validate_settings()
