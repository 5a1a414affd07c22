"""Definition 1 of the paper: the cross-domain sequence X and the per-domain sequences X^d.

For a user's history e_1..e_h (chronological) and the next item e_{h+1} (the label):
  X       = [SOS, e_1, ..., e_h]              target  = [e_1, ..., e_h, e_{h+1}]
  X^d     = [SOS, x^d_1, ..., x^d_{h_d}]      target^d = [x^d_1, ..., x^d_{h_d}, e_{h+1} if in d else PAD]
Each is cut to its T most recent positions and left-padded with PAD to length T (§4.1).
`single_index[t]` is the position in X^{target_domain[t]} whose target is the same item as
position t of X, so the single- and cross-domain losses of one target can be compared (Eq. 10).
Leave-one-out (§5.2.2): the last event is the test label, the one before the valid label, and
the train example predicts every earlier event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from schemas.features import SPLITS
from schemas.vocabulary import NO_DOMAIN, PAD_ID, SOS_ID

MIN_EVENTS_FOR_SPLIT = 3


@dataclass
class SequenceExampleData:
    """The tensors of one (user, split) example, all of length T (single_* are T x D)."""

    user_id: str
    split: str
    history_length: int
    label_item: int
    label_domain: int
    item: list[int]
    domain: list[int]
    target_item: list[int]
    target_domain: list[int]
    single_item: list[list[int]]
    single_target: list[list[int]]
    single_index: list[int]


def _left_pad(values: list[int], length: int, pad: int = PAD_ID) -> list[int]:
    values = values[-length:]
    return [pad] * (length - len(values)) + values


def build_example(
    user_id: str,
    split: str,
    history: Sequence[tuple[int, int]],
    label: tuple[int, int],
    num_domains: int,
    max_len: int,
) -> SequenceExampleData:
    """Build X, X^d, targets and alignment for one history (list of (item_id, domain_id))."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    hist_items = [item for item, _ in history]
    hist_domains = [dom for _, dom in history]
    label_item, label_domain = label
    targets = hist_items + [label_item]
    target_domains = hist_domains + [label_domain]

    item = _left_pad([SOS_ID] + hist_items, max_len)
    domain = _left_pad([NO_DOMAIN] + hist_domains, max_len, NO_DOMAIN)
    target_item = _left_pad(targets, max_len)
    target_domain = _left_pad(target_domains, max_len, NO_DOMAIN)

    columns_in, columns_out, lengths = [], [], []
    for d in range(1, num_domains + 1):
        items_d = [item_ for item_, dom in history if dom == d]
        inputs_d = [SOS_ID] + items_d
        targets_d = items_d + [label_item if label_domain == d else PAD_ID]
        columns_in.append(_left_pad(inputs_d, max_len))
        columns_out.append(_left_pad(targets_d, max_len))
        lengths.append(len(inputs_d))

    # Position of each cross target inside its domain's padded X^d.
    seen = [0] * (num_domains + 1)
    aligned = []
    for dom in target_domains:
        k = seen[dom]
        seen[dom] += 1
        pos = max_len - lengths[dom - 1] + k
        aligned.append(pos if pos >= 0 else -1)
    single_index = _left_pad(aligned, max_len, -1)

    return SequenceExampleData(
        user_id=user_id,
        split=split,
        history_length=len(history),
        label_item=label_item,
        label_domain=label_domain,
        item=item,
        domain=domain,
        target_item=target_item,
        target_domain=target_domain,
        single_item=[list(step) for step in zip(*columns_in)],
        single_target=[list(step) for step in zip(*columns_out)],
        single_index=single_index,
    )


def leave_one_out(
    user_id: str, events: Sequence[tuple[int, int]], num_domains: int, max_len: int
) -> list[SequenceExampleData]:
    """Train/valid/test examples of one user's chronological events (needs >= 3 events)."""
    n = len(events)
    if n < MIN_EVENTS_FOR_SPLIT:
        raise ValueError(f"user {user_id!r} has {n} events; leave-one-out needs at least {MIN_EVENTS_FOR_SPLIT}")
    return [
        build_example(user_id, split, events[:cut], events[cut], num_domains, max_len)
        for split, cut in zip(SPLITS, (n - 3, n - 2, n - 1))
    ]
