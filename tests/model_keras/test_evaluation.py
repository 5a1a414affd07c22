"""Metrics against hand-computed rankings; the sampler's protocol; popularity scoring."""

import math

import numpy as np
import pytest

from schemas.vocabulary import Vocabulary
from model_keras.evaluation import EvalProtocol, NegativeSampler, PopularityScorer, evaluate, label_ranks, rank_metrics


def test_rank_metrics_by_hand():
    m = rank_metrics(np.array([0, 3, 7, 40]))
    assert m["HR@5"] == 0.5 and m["HR@10"] == 0.75
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(5)) / 4)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(9)) / 4)
    assert m["MRR"] == pytest.approx((1 + 1 / 4 + 1 / 8 + 1 / 41) / 4)


def test_paired_gain_is_the_ndcg_difference_with_its_standard_error_by_hand():
    from model_keras.metrics import ndcg, paired_gain

    base, other = np.array([0, 3, 20, 9]), np.array([1, 0, 2, 9])
    gains = ndcg(other, 10) - ndcg(base, 10)
    assert gains.tolist() == pytest.approx([1 / math.log2(3) - 1, 1 - 1 / math.log2(5), 1 / math.log2(4), 0.0])
    mean, standard_error = paired_gain(base, other)
    assert mean == pytest.approx(rank_metrics(other)["NDCG@10"] - rank_metrics(base)["NDCG@10"])
    assert standard_error == pytest.approx(np.std(gains, ddof=1) / 2)
    assert paired_gain(np.array([5]), np.array([0]))[1] == math.inf  # one user: nothing can be told


def test_the_same_gain_is_trusted_on_many_users_and_not_on_few():
    """The tower choice's evidence: one user in ten moving from rank 9 to rank 0 is a real gain over 4,000 users
    (many standard errors) and noise over 30 (under two)."""
    from model_keras.metrics import paired_gain

    def users(n):
        base = np.full(n, 9)
        other = base.copy()
        other[::10] = 0
        return base, other

    many, few = paired_gain(*users(4000)), paired_gain(*users(30))
    assert many[0] == pytest.approx(few[0])  # the same mean gain
    assert many[0] / many[1] > 10 and few[0] / few[1] < 2


def test_label_ranks_with_and_without_ties():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4], [0.5, 0.5, 0.5]])
    assert label_ranks(scores).tolist() == [0, 2, 0]
    rng = np.random.default_rng(0)
    tied = [label_ranks(np.zeros((1, 100)), rng=rng)[0] for _ in range(3000)]
    assert set(tied) <= set(range(100)) and 45 < np.mean(tied) < 54  # uniform among the 100 tied candidates


def make_vocab():
    counts = {("A", f"a{i}"): 1 for i in range(150)}
    counts.update({("B", f"b{i}"): 1 for i in range(30)})
    return Vocabulary.from_counts(counts)


def test_negatives_are_unseen_in_domain_and_reproducible():
    vocab = make_vocab()
    a = vocab.domain("A")
    sampler = NegativeSampler(vocab, EvalProtocol())
    seen = {a.start + 1, a.start + 2, a.start + 3}
    neg = sampler.sample("user-1", a.domain_id, seen)
    assert len(neg) == 99 == len(set(neg.tolist()))
    assert all(a.start < n < a.end for n in neg) and not seen & set(neg.tolist())
    assert (sampler.sample("user-1", a.domain_id, seen) == neg).all()
    assert not (sampler.sample("user-2", a.domain_id, seen) == neg).all()


def test_small_domain_and_all_items_pool():
    vocab = make_vocab()
    b = vocab.domain("B")
    neg = NegativeSampler(vocab, EvalProtocol()).sample("u", b.domain_id, {b.start + 1})
    assert len(neg) == 99 and set(neg.tolist()) == set(range(b.start + 2, b.end))  # 29 left: all used, repeats allowed
    pooled = NegativeSampler(vocab, EvalProtocol(pool="all")).sample("u", b.domain_id, set())
    assert {vocab.domain_of_item(int(n)) for n in pooled} == {1, 2} and not {d.oov_id for d in vocab.domains} & set(
        pooled.tolist()
    )


def test_popularity_and_protocols_on_the_sample(sample_examples, vocab):
    out = str(sample_examples[0])
    pop = PopularityScorer.from_examples(out, vocab)
    assert pop.counts.sum() > 0 and pop.counts[:2].sum() == 0
    result = evaluate(pop, out, "valid", vocab)
    assert result["all"]["users"] == 500 == sum(d["users"] for d in result["domains"].values())
    assert result == evaluate(pop, out, "valid", vocab, EvalProtocol(batch_size=37))  # batch size does not matter
    full = evaluate(pop, out, "valid", vocab, EvalProtocol(full_ranking=True))
    assert full["all"]["MRR"] < result["all"]["MRR"]  # thousands of candidates instead of 100


def test_non_finite_scores_rank_last():
    scores = np.array([[np.nan, 0.1, 0.2], [np.inf, 0.1, 0.2], [0.5, np.nan, -np.inf], [0.1, np.inf, 0.2]])
    np.testing.assert_array_equal(label_ranks(scores), [2, 2, 0, 1])  # label first; NaN/inf candidates count as -inf
    np.testing.assert_array_equal(label_ranks(scores, rng=np.random.default_rng(0)), [2, 2, 0, 1])


class _ConstantScorer:
    def __init__(self, value):
        self.value = value

    def score_candidates(self, batch, candidates):
        return np.full(candidates.shape, self.value, dtype=np.float32)


def test_a_nan_model_gets_the_worst_metrics_and_is_flagged(sample_examples, vocab):
    result = evaluate(_ConstantScorer(np.nan), str(sample_examples[0]), "valid", vocab)
    assert result["all"]["HR@10"] == 0.0 and result["all"]["MRR"] == pytest.approx(0.01)  # rank 100 of 100
    assert result["health"]["non_finite_scores"] == 500 * 100


def test_a_constant_model_scores_like_chance_and_is_flagged(sample_examples, vocab):
    result = evaluate(_ConstantScorer(0.5), str(sample_examples[0]), "valid", vocab)
    assert 0.05 < result["all"]["HR@10"] < 0.15  # ties broken at random: 10 of 100 candidates
    assert result["health"] == {"non_finite_scores": 0, "constant_score_users": 500}


def test_protocol_errors_name_the_setting():
    with pytest.raises(ValueError, match="negatives must come from"):
        EvalProtocol(pool="catalogue")
    with pytest.raises(ValueError, match="whole number"):
        EvalProtocol(num_negatives=0)
    assert EvalProtocol(num_negatives=999).describe() == "999 negatives from the label's domain"


def test_reports_name_the_tower_serving_each_domain():
    from model_keras.metrics import towers_line

    towers = {
        "Books": {"tower": "single", "cross": 0.1, "single": 0.2},
        "Toys": {"tower": "cross", "cross": 0.3, "single": 0.2},
    }
    assert towers_line(towers) == "served by: Books single-domain tower, Toys cross tower"
    towers["Books"]["tower"] = "cross"
    assert towers_line(towers) == "served by: the cross tower in every domain"
    assert towers_line({"Books": towers["Books"]}) == "served by: Books cross tower"
    assert towers_line(None) == "" and towers_line({}) == ""


@pytest.mark.parametrize("protocol", [EvalProtocol(), EvalProtocol(full_ranking=True)], ids=["sampled", "full"])
def test_views_scored_in_one_pass_rank_exactly_as_each_view_alone(sample_examples, vocab, make_model, protocol):
    """The tower choice and diagnose score several views at once (one trace, one pass, the negatives drawn once);
    each view's ranks, ties and health are exactly what a pass of its own gives."""
    from model_keras.evaluation import ModelScorer, rank_users, rank_users_by_view

    model, examples, views = make_model(num_cross_experts=2), str(sample_examples[0]), ("cross", "single", "both")
    together = rank_users_by_view(ModelScorer(model, views), examples, "valid", vocab, protocol)
    assert set(together) == set(views)
    for view in views:
        alone = rank_users(ModelScorer(model, view), examples, "valid", vocab, protocol)
        np.testing.assert_array_equal(together[view].ranks, alone.ranks)
        np.testing.assert_array_equal(together[view].domains, alone.domains)
        assert together[view].health == alone.health
    assert not np.array_equal(together["cross"].ranks, together["single"].ranks)  # the views do differ
