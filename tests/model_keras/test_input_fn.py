"""Training batches of similar history length: the same examples, once each, in less padding."""

import numpy as np

from model_keras.input_fn import make_dataset


def _epoch(examples, vocab, sort_window):
    batches = list(
        make_dataset(str(examples), "train", vocab.num_domains, batch_size=16, shuffle=True, seed=3, sort_window=sort_window)
    )
    users = [u for b in batches for u in b["user_id"].numpy().tolist()]
    lengths = [np.sum(b["item"].numpy() > 0, axis=1) for b in batches]
    return batches, users, lengths


def test_length_sorted_batches_hold_every_example_once_with_less_padding(sample_examples, vocab):
    plain, plain_users, plain_lengths = _epoch(sample_examples[0], vocab, 0)
    _, sorted_users, sorted_lengths = _epoch(sample_examples[0], vocab, 8)
    assert sorted(sorted_users) == sorted(plain_users) and len(set(sorted_users)) == len(sorted_users)
    assert sorted_users != plain_users  # another order: batches are cut from length-sorted windows
    padded = lambda lengths: sum(int(np.max(x)) * len(x) for x in lengths)  # noqa: E731 (what trim_to_longest keeps)
    assert padded(sorted_lengths) < 0.9 * padded(plain_lengths)  # T = 20 here: most histories fill it
    assert sum(len(x) for x in sorted_lengths) == sum(len(x) for x in plain_lengths)
    # Every batch but each window's last is full, and its histories are in length order.
    assert sum(len(x) < 16 for x in sorted_lengths) <= -(-len(sorted_users) // (16 * 8))
    assert all(np.all(np.diff(x) >= 0) for x in sorted_lengths)
    # Each batch keeps every feature of its examples together: a row's target follows its own history.
    for batch in plain[:2]:
        assert batch["item"].shape[0] == batch["target_item"].shape[0] == batch["single_item"].shape[0]
