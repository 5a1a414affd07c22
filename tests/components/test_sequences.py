"""Definition 1 / Fig. 2 of the paper, truncation, padding and leave-one-out."""

import random

import pytest

from components.sequences import build_example, leave_one_out
from schemas.vocabulary import PAD_ID as P
from schemas.vocabulary import SOS_ID as S

A, B, C = 1, 2, 3
# Fig. 2: X = [SOS, x1^A, x2^B, x3^A, x4^B, x5^A, x6^C, x7^C]; items x_t have id 10 + t.
FIG2_HISTORY = [(11, A), (12, B), (13, A), (14, B), (15, A), (16, C), (17, C)]
FIG2_LABEL = (18, C)


def column(example, d, name="single_item"):
    return [step[d - 1] for step in getattr(example, name)]


def test_fig2_cross_sequence_and_targets():
    ex = build_example("u", "test", FIG2_HISTORY, FIG2_LABEL, num_domains=3, max_len=8)
    assert ex.item == [S, 11, 12, 13, 14, 15, 16, 17]
    assert ex.domain == [0, A, B, A, B, A, C, C]
    assert ex.target_item == [11, 12, 13, 14, 15, 16, 17, 18]
    assert ex.target_domain == [A, B, A, B, A, C, C, C]
    assert (ex.label_item, ex.label_domain, ex.history_length) == (18, C, 7)


def test_fig2_single_domain_sequences():
    ex = build_example("u", "test", FIG2_HISTORY, FIG2_LABEL, num_domains=3, max_len=8)
    # X^A = [SOS, x1, x3, x5], X^B = [SOS, x2, x4], X^C = [SOS, x6, x7] (left-padded to T=8).
    assert column(ex, A) == [P, P, P, P, S, 11, 13, 15]
    assert column(ex, B) == [P, P, P, P, P, S, 12, 14]
    assert column(ex, C) == [P, P, P, P, P, S, 16, 17]
    # Shifted targets; the label x8 is in C, so A's and B's last positions have no target.
    assert column(ex, A, "single_target") == [P, P, P, P, 11, 13, 15, P]
    assert column(ex, B, "single_target") == [P, P, P, P, P, 12, 14, P]
    assert column(ex, C, "single_target") == [P, P, P, P, P, 16, 17, 18]
    assert ex.single_index == [4, 5, 5, 6, 6, 5, 6, 7]


def test_single_index_points_at_the_same_target():
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 40)
        history = [(rng.randint(2, 99), rng.randint(1, 4)) for _ in range(n)]
        label = (rng.randint(2, 99), rng.randint(1, 4))
        T = rng.randint(1, 30)
        ex = build_example("u", "train", history, label, num_domains=4, max_len=T)
        for t in range(T):
            d, idx = ex.target_domain[t], ex.single_index[t]
            if ex.target_item[t] == P:
                assert idx == -1 and d == 0
            else:
                assert idx >= 0
                assert ex.single_target[idx][d - 1] == ex.target_item[t]
        for d in range(1, 5):
            assert all(i in (P, S) or (i, d) in history for i in column(ex, d))


def test_truncation_keeps_the_t_most_recent():
    ex = build_example("u", "test", FIG2_HISTORY, FIG2_LABEL, num_domains=3, max_len=4)
    assert ex.item == [14, 15, 16, 17]  # SOS and x1..x3 fall off the left
    assert ex.target_item == [15, 16, 17, 18]
    assert column(ex, A) == [S, 11, 13, 15]  # X^A has exactly 4 tokens
    ex3 = build_example("u", "test", FIG2_HISTORY, FIG2_LABEL, num_domains=3, max_len=3)
    assert column(ex3, A) == [11, 13, 15]
    assert column(ex3, A, "single_target") == [13, 15, P]
    assert ex3.single_index == [0, 1, 2]  # x6, x7, x8 are the targets [16, 17, 18] of X^C = [SOS, 16, 17]


def test_left_padding_of_a_short_history():
    ex = build_example("u", "train", [(30, B)], (31, A), num_domains=2, max_len=5)
    assert ex.item == [P, P, P, S, 30]
    assert ex.domain == [0, 0, 0, 0, B]
    assert ex.target_item == [P, P, P, 30, 31]
    assert ex.target_domain == [0, 0, 0, B, A]
    assert column(ex, A) == [P, P, P, P, S]
    assert column(ex, A, "single_target") == [P, P, P, P, 31]
    assert column(ex, B) == [P, P, P, S, 30]
    assert column(ex, B, "single_target") == [P, P, P, 30, P]
    assert ex.single_index == [-1, -1, -1, 3, 4]


def test_empty_history_predicts_the_first_event():
    ex = build_example("u", "train", [], (40, A), num_domains=1, max_len=3)
    assert ex.item == [P, P, S] and ex.target_item == [P, P, 40]


def test_leave_one_out_split():
    events = [(10 + i, A if i % 2 else B) for i in range(1, 7)]  # e1..e6
    train, valid, test = leave_one_out("u", events, num_domains=2, max_len=10)
    assert [e.split for e in (train, valid, test)] == ["train", "valid", "test"]
    assert (train.label_item, valid.label_item, test.label_item) == (14, 15, 16)
    assert train.target_item[-4:] == [11, 12, 13, 14] and train.history_length == 3
    assert valid.item[-5:] == [S, 11, 12, 13, 14]
    assert test.item[-6:] == [S, 11, 12, 13, 14, 15]
    assert test.label_domain == B and valid.label_domain == A


def test_leave_one_out_needs_three_events():
    with pytest.raises(ValueError, match="at least 3"):
        leave_one_out("u", [(10, A), (11, A)], num_domains=1, max_len=5)
