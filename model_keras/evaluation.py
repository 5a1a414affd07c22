"""Leave-one-out evaluation (§5.2.2): per-domain HR@5/10, NDCG@5/10 and MRR.

Protocols: the label plus `num_negatives` (99) items the user has not interacted with, drawn
from the label's domain (default) or from all items (`pool="all"`, as the official code does),
or full ranking over the label domain's items. Negatives are drawn from a generator seeded by
(seed, user id), so every model compared sees exactly the same candidates for each user,
whatever the batch size or order. Ties are broken at random (seeded by user): the label lands
uniformly among the candidates it ties with, so a constant scorer scores like chance. Every user is
scored: the last partial batch is kept. "Interacted"
means the items in the example's window (the T most recent positions and the label).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

import tensorflow as tf

from schemas.vocabulary import FIRST_ITEM_ID, Vocabulary
from model_keras.input_fn import make_dataset
from model_keras.protocol import POOLS, EvalProtocol  # noqa: F401 (re-exported)
from model_keras.metrics import METRICS, format_metrics, rank_metrics  # noqa: F401 (re-exported)


def label_ranks(
    scores: np.ndarray, label_scores: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> np.ndarray:
    """0-based rank of the label: #candidates scoring higher + a uniform share of those tied.

    Without `label_scores`, column 0 of `scores` is the label. Without `rng`, ties rank first.
    A broken model never wins: a non-finite label score ranks last (behind every candidate), and a
    non-finite candidate score counts as -inf, never above the label.
    """
    if label_scores is None:
        label_scores, scores = scores[:, 0], scores[:, 1:]
    scores = np.where(np.isfinite(scores), scores, -np.inf)
    broken = ~np.isfinite(label_scores)
    label_scores = np.where(broken, 0.0, label_scores)
    higher = np.sum(scores > label_scores[:, None], axis=1)
    tied = np.sum(scores == label_scores[:, None], axis=1)
    ranks = higher if rng is None else higher + np.floor(rng.random(len(higher)) * (tied + 1)).astype(np.int64)
    return np.where(broken, scores.shape[1], ranks)


def score_health(scores: np.ndarray) -> dict[str, int]:
    """What a healthy model never produces: non-finite scores, and users whose candidates all score the same."""
    finite = np.isfinite(scores)
    rows = np.where(finite, scores, 0.0)
    constant = (scores.shape[1] > 1) & np.all(rows == rows[:, :1], axis=1) & np.all(finite, axis=1)
    return {"non_finite_scores": int(np.sum(~finite)), "constant_score_users": int(np.sum(constant))}


class NegativeSampler:
    """Items a user has not interacted with, from the label's domain or from all items."""

    def __init__(self, vocabulary: Vocabulary, protocol: EvalProtocol):
        self.protocol = protocol
        self.ranges = {d.domain_id: (d.start + 1, d.end) for d in vocabulary.domains}  # OOV excluded
        self.oov = {d.start for d in vocabulary.domains}
        self.num_items = vocabulary.num_items

    def _pool(self, domain: int) -> tuple[int, int]:
        return self.ranges[domain] if self.protocol.pool == "domain" else (FIRST_ITEM_ID, self.num_items)

    def sample(self, user_id: str, label_domain: int, seen: set[int]) -> np.ndarray:
        """`num_negatives` items of the pool the user has not interacted with, the same for every model."""
        rng = np.random.default_rng([self.protocol.seed, zlib.crc32(user_id.encode("utf-8"))])
        low, high = self._pool(label_domain)
        n = self.protocol.num_negatives
        allowed = (
            (high - low)
            - len([i for i in seen if low <= i < high])
            - (0 if self.protocol.pool == "domain" else len(self.oov))
        )
        chosen: list[int] = []
        taken: set[int] = set()
        while len(chosen) < n:
            for item in rng.integers(low, high, size=2 * n):
                item = int(item)
                if item in seen or item in self.oov or (item in taken and len(taken) < allowed):
                    continue
                chosen.append(item)
                taken.add(item)
                if len(chosen) == n:
                    break
            if allowed <= 0:
                raise ValueError(f"no negative item left for user {user_id!r} in domain {label_domain}")
        return np.asarray(chosen, dtype=np.int32)


class Scorer:
    """What the evaluator needs from a model: scores for candidates, or for a whole domain."""

    def score_candidates(self, batch: dict, candidates: np.ndarray) -> np.ndarray:  # [B, C]
        raise NotImplementedError

    def score_domain(self, batch: dict) -> np.ndarray:  # [B, |V|], -inf outside the label domain
        raise NotImplementedError


class ModelScorer(Scorer):
    """Any model of model_keras (base.SequentialRecommender) as it is served (view "served": for SyNCRec, per
    domain the tower it chose), or one view forced: "cross" (Eq. 19) or "single" (X^d through the domain's tower).
    Given a tuple of views it scores them all in one traced call ({view: scores}; rank_users_by_view), "both"
    reusing the cross and single representations (model.representations_for).

    The model's calls are compiled once (tf.function): evaluation runs every epoch, and eager
    execution of the encoder costs 4x more than the compiled graph. Once means once: each function is traced
    for the first batch's shapes with the batch size (and the number of candidates, which differs between
    protocols) left open, so the last, smaller batch does not trace the encoder again; a scorer used again (on
    another split, under another protocol) reuses its trace."""

    INPUTS = ("item", "single_item", "label_domain", "user_id")

    def __init__(self, model, view: str | tuple[str, ...] = "served"):
        self.model, self.view = model, view
        self._candidates = self._domain = None

    def score_candidates(self, batch, candidates):
        inputs = self._select(batch)
        if self._candidates is None:
            signature = [_open_batch(inputs), tf.TensorSpec([None, None], tf.int32)]
            self._candidates = tf.function(self._score_candidates, input_signature=signature)
        return _numpy(self._candidates(inputs, tf.constant(candidates, tf.int32)))

    def score_domain(self, batch):
        inputs = self._select(batch)
        if self._domain is None:
            self._domain = tf.function(self._score_domain, input_signature=[_open_batch(inputs)])
        return _numpy(self._domain(inputs))

    def _representations(self, batch):
        if isinstance(self.view, str):
            return self.model.representation_for(batch, self.view)
        return self.model.representations_for(batch, self.view)

    def _score_candidates(self, batch, candidates):
        return tf.nest.map_structure(lambda r: self.model.score(r, candidates), self._representations(batch))

    def _score_domain(self, batch):
        domain = batch["label_domain"]
        return tf.nest.map_structure(lambda r: self.model.score_domain(r, domain), self._representations(batch))

    def _select(self, batch) -> dict:
        return {k: batch[k] for k in self.INPUTS}


def _numpy(scores):
    """An array, or {view: array} from a scorer of several views."""
    return {view: s.numpy() for view, s in scores.items()} if isinstance(scores, dict) else scores.numpy()


def _open_batch(tensors: dict) -> dict:
    """TensorSpecs of `tensors` with dimension 0 (the batch) left open."""
    return {k: tf.TensorSpec([None, *t.shape[1:]], t.dtype) for k, t in tensors.items()}


class PopularityScorer(Scorer):
    """Most-popular baseline: an item's score is its count among the train split's targets."""

    def __init__(self, counts: np.ndarray, vocabulary: Vocabulary):
        self.counts = counts.astype(np.float64)
        self.item_domain = np.zeros(vocabulary.num_items, dtype=np.int64)
        for d in vocabulary.domains:
            self.item_domain[d.start + 1 : d.end] = d.domain_id

    @classmethod
    def from_examples(cls, examples_dir: str, vocabulary: Vocabulary) -> "PopularityScorer":
        """Item counts among the train split's targets."""
        counts = np.zeros(vocabulary.num_items, dtype=np.int64)
        for batch in make_dataset(examples_dir, "train", vocabulary.num_domains, batch_size=1024):
            targets = batch["target_item"].numpy().ravel()
            np.add.at(counts, targets[targets > 0], 1)
        return cls(counts, vocabulary)

    def score_candidates(self, batch, candidates):
        return self.counts[candidates]

    def score_domain(self, batch):
        domain = batch["label_domain"].numpy()[:, None]
        return np.where(self.item_domain[None, :] == domain, self.counts[None, :], -np.inf)


def _full_ranks(scores: np.ndarray, labels: np.ndarray, windows: np.ndarray, tie_rng) -> tuple[np.ndarray, dict]:
    """Ranks of the labels among all items of their domain the user has not interacted with (`scores`:
    score_domain's, changed in place)."""
    label_scores = scores[np.arange(len(labels)), labels].copy()
    in_domain = scores != -np.inf  # -inf marks items outside the label's domain, by design
    finite = np.isfinite(scores)
    first = np.take_along_axis(scores, np.argmax(in_domain, axis=1)[:, None], axis=1)
    constant = np.all((scores == first) | ~in_domain, axis=1) & np.all(finite | ~in_domain, axis=1)
    health = {"non_finite_scores": int(np.sum(in_domain & ~finite)), "constant_score_users": int(np.sum(constant))}
    for row, window in enumerate(windows):
        scores[row, window[window >= FIRST_ITEM_ID]] = -np.inf  # history and the label itself
    return label_ranks(scores, label_scores, tie_rng), health


def _sampled_candidates(batch: dict, labels: np.ndarray, windows: np.ndarray, sampler: NegativeSampler) -> np.ndarray:
    """[B, 1 + num_negatives]: each label, then its user's negatives (the same for every model)."""
    users = [u.decode("utf-8") for u in batch["user_id"].numpy()]
    domains = batch["label_domain"].numpy()
    negatives = np.stack([sampler.sample(u, int(d), set(w.tolist())) for u, d, w in zip(users, domains, windows)])
    return np.concatenate([labels[:, None], negatives], axis=1).astype(np.int32)


def _sampled_ranks(scores: np.ndarray, tie_rng) -> tuple[np.ndarray, dict]:
    """Ranks of the labels (column 0) among the sampled candidates."""
    scores = np.asarray(scores, dtype=np.float64)
    return label_ranks(scores, rng=tie_rng), score_health(scores)


@dataclass
class RankedUsers:
    """Every user of a split with the label's 0-based rank and domain, in split order (the same order for every
    model: paired comparisons such as the tower choice line users up by position), and the score health."""

    ranks: np.ndarray
    domains: np.ndarray
    health: dict

    def in_domain(self, domain_id: int) -> np.ndarray:
        return self.ranks[self.domains == domain_id]

    def result(self, vocabulary: Vocabulary) -> dict:
        """The metrics table evaluate returns."""
        result = {
            "domains": {},
            "all": {**rank_metrics(self.ranks), "users": int(self.ranks.size)},
            "health": self.health,
        }
        for d in vocabulary.domains:
            selected = self.in_domain(d.domain_id)
            result["domains"][d.name] = {**rank_metrics(selected), "users": int(selected.size)}
        return result


def rank_users(
    scorer: Scorer, examples_dir: str, split: str, vocabulary: Vocabulary, protocol: EvalProtocol = EvalProtocol()
) -> RankedUsers:
    """Each user's label rank under `protocol` (evaluate's metrics are their means)."""
    return rank_users_by_view(scorer, examples_dir, split, vocabulary, protocol)[None]


def rank_users_by_view(
    scorer: Scorer, examples_dir: str, split: str, vocabulary: Vocabulary, protocol: EvalProtocol = EvalProtocol()
) -> dict:
    """{view: RankedUsers} for a scorer of several views (ModelScorer with a tuple), {None: RankedUsers} for one.
    One pass over the split: every view ranks the same candidates, and each view's ties are broken by the draws a
    pass of its own would make, so its ranks are exactly rank_users' for that view alone."""
    views = scorer.view if isinstance(getattr(scorer, "view", None), tuple) else (None,)
    sampler = NegativeSampler(vocabulary, protocol)
    tie_rngs = {view: np.random.default_rng([protocol.seed, 1]) for view in views}
    ranks = {view: [] for view in views}
    health = {view: {"non_finite_scores": 0, "constant_score_users": 0} for view in views}
    domains = []
    for batch in make_dataset(examples_dir, split, vocabulary.num_domains, batch_size=protocol.batch_size):
        labels = batch["label_item"].numpy()
        windows = np.concatenate([batch["item"].numpy(), batch["target_item"].numpy()], axis=1)
        if protocol.full_ranking:
            scores = scorer.score_domain(batch)
        else:
            scores = scorer.score_candidates(batch, _sampled_candidates(batch, labels, windows, sampler))
        for view, view_scores in (scores if isinstance(scores, dict) else {None: scores}).items():
            if protocol.full_ranking:
                batch_ranks, batch_health = _full_ranks(view_scores, labels, windows, tie_rngs[view])
            else:
                batch_ranks, batch_health = _sampled_ranks(view_scores, tie_rngs[view])
            ranks[view].append(batch_ranks)
            health[view] = {k: health[view][k] + batch_health[k] for k in batch_health}
        domains.append(batch["label_domain"].numpy())
    users_domains = np.concatenate(domains) if domains else np.zeros(0, np.int64)
    return {
        view: RankedUsers(np.concatenate(ranks[view]) if domains else np.zeros(0), users_domains, health[view])
        for view in views
    }


def evaluate(
    scorer: Scorer, examples_dir: str, split: str, vocabulary: Vocabulary, protocol: EvalProtocol = EvalProtocol()
) -> dict:
    """{"domains": {name: {metric: value, "users": n}}, "all": {...}, "health": {...}} for one split.

    `health` counts non-finite scores and users whose candidates all scored the same: a model with
    either is broken whatever its metrics say (blessing refuses it)."""
    return rank_users(scorer, examples_dir, split, vocabulary, protocol).result(vocabulary)
