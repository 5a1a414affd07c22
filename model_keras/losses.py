"""Losses of SyNCRec (§4.3-4.5): pairwise ranking, one reduction for every term, NTG, relative NTG, SC-MIM.

All functions are pure TensorFlow on explicit masks so each is testable on hand-made tensors.
Conventions: per-position losses are positive numbers to minimise (the paper writes the
log-likelihood log sigma(.), we minimise its negative). `reduce` turns per-position (or per-user)
losses into one number the same way for every model and every term (`loss_reduction`):
  sum          Eq. 8/9/12 as written: sum over each sequence's positions, mean over the batch's sequences
  mean         mean over every position of the batch
  domain_mean  mean over each domain's positions, then mean over the domains present
  sequence_domain_mean  each sequence's mean over its domain-d positions, averaged over the batch's sequences
               (0 for one without domain d) and summed over the domains: every user weighs the same in a
               domain's loss however long the sequence, as ABXI's loss_a + loss_b (per-position terms only:
               the sequence is the first axis)
Optional per-domain weights (LC-NTG's lambda) multiply each position's loss by its domain's weight.
Sums and counts go through `global_sum`, so under tf.distribute every replica normalises by the
global batch and the summed gradients equal one worker's on the whole batch.
"""

import tensorflow as tf

from model_keras.config import REDUCTIONS  # the setting's one list of values


def pairwise_loss(pos_logit: tf.Tensor, neg_logit: tf.Tensor, kind: str = "bce") -> tf.Tensor:
    """Per-position loss for one positive and one sampled negative.

    eq8: -log sigma(P+ - P-) with P = sigma(y . M(x))  (Eq. 8/9 literally)
    bpr: -log sigma(s+ - s-) on the logits s = y . M(x)  (BPR, [23])
    bce: -log sigma(s+) - log(1 - sigma(s-))              (what the official code trains with)
    """
    if kind == "eq8":
        return tf.nn.softplus(-(tf.sigmoid(pos_logit) - tf.sigmoid(neg_logit)))
    if kind == "bpr":
        return tf.nn.softplus(neg_logit - pos_logit)
    if kind == "bce":
        return tf.nn.softplus(-pos_logit) + tf.nn.softplus(neg_logit)
    raise ValueError(f"unknown pairwise loss {kind!r}")


def sampled_softmax_loss(
    pos_logit: tf.Tensor,
    neg_logits: tf.Tensor,
    neg_valid: tf.Tensor,
    temperature: float,
    pos_log_q: tf.Tensor | None = None,
    neg_log_q: tf.Tensor | None = None,
) -> tf.Tensor:
    """Per-position cross-entropy of the target against N sampled negatives of its domain, at a temperature.

    pos_logit [...], neg_logits [..., N], neg_valid [..., N] (False: a negative of another domain, or the
    target itself drawn as a negative: left out). Uniform sampling within the domain needs no logQ correction:
    every negative has the same proposal probability, which cancels in the softmax. With another proposal q
    (popularity), `pos_log_q` [...] and `neg_log_q` [..., N] are log q of each item, subtracted from its
    tempered logit (the logQ correction of sampled softmax, Jean et al. 2015; TFRS's Retrieval task subtracts
    log candidate_sampling_probability alike), so the sampled loss estimates the full softmax's."""
    neg = neg_logits / temperature - (0.0 if neg_log_q is None else neg_log_q)
    pos = pos_logit / temperature - (0.0 if pos_log_q is None else pos_log_q)
    neg = tf.where(neg_valid, neg, tf.fill(tf.shape(neg), -1e9))
    logits = tf.concat([pos[..., tf.newaxis], neg], axis=-1)
    return tf.reduce_logsumexp(logits, axis=-1) - logits[..., 0]


def full_softmax_loss(
    representation: tf.Tensor, table: tf.Tensor, targets: tf.Tensor, domains: tf.Tensor, ranges, temperature: float
) -> tf.Tensor:
    """Per-position cross-entropy of the target against every item of its domain (no sampling).

    representation [..., r], targets and domains [...] (domain 0: a PAD position, loss 0), table [|V|, r],
    ranges[d-1] = (first item id, end) of domain d (its OOV id excluded). Each domain's positions are scored
    against that domain's rows of the table only: one [P_d, |V^d|] product a domain, not [P, |V|]."""
    rows = tf.reshape(representation, [-1, tf.shape(representation)[-1]])
    flat_targets, flat_domains = tf.reshape(targets, [-1]), tf.reshape(domains, [-1])
    loss = tf.zeros(tf.shape(flat_targets), representation.dtype)
    for d, (first, end) in enumerate(ranges, start=1):
        where = tf.where(tf.equal(flat_domains, d))  # [P_d, 1]
        logits = tf.matmul(tf.gather_nd(rows, where), table[first:end], transpose_b=True) / temperature
        local = tf.gather_nd(flat_targets, where) - first
        per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=local, logits=logits)
        loss = tf.tensor_scatter_nd_update(loss, where, per_position)
    return tf.reshape(loss, tf.shape(targets))


def sample_negatives(
    target_domain: tf.Tensor, domain_start: tf.Tensor, domain_count: tf.Tensor, uniform: tf.Tensor | None = None
) -> tf.Tensor:
    """One item per position drawn uniformly from V^d of the target's domain (OOV excluded).

    domain_start/domain_count are indexed by domain id (id 0 = none -> PAD item 0); `uniform` holds one
    number in [0, 1) per position (drawn here when None).
    """
    start = tf.gather(domain_start, target_domain)
    count = tf.gather(domain_count, target_domain)
    u = tf.random.uniform(tf.shape(target_domain)) if uniform is None else uniform
    return start + tf.cast(tf.floor(u * tf.cast(count, tf.float32)), target_domain.dtype) * tf.cast(
        count > 0, target_domain.dtype
    )


def global_sum(value: tf.Tensor) -> tf.Tensor:
    """Sum over the replicas of a tf.distribute strategy (the value itself without one)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def domain_sums(
    values: tf.Tensor, domains: tf.Tensor, mask: tf.Tensor, num_domains: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """(sum of `values` per domain 1..D over unmasked positions [D], position counts [D]) of this replica's batch.

    Masked positions contribute nothing, whatever their value (NaN and inf included).
    """
    flat_mask = tf.reshape(mask, [-1])
    flat_values = tf.boolean_mask(tf.reshape(values, [-1]), flat_mask)
    flat_domains = tf.boolean_mask(tf.reshape(domains, [-1]), flat_mask) - 1
    sums = tf.math.unsorted_segment_sum(flat_values, flat_domains, num_domains)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat_values), flat_domains, num_domains)
    return sums, counts


def domain_means(
    values: tf.Tensor, domains: tf.Tensor, mask: tf.Tensor, num_domains: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean of `values` per domain 1..D over the unmasked positions of the global batch [D], position counts [D])."""
    sums, counts = domain_sums(values, domains, mask, num_domains)
    sums, counts = global_sum(sums), global_sum(counts)
    return tf.math.divide_no_nan(sums, counts), counts


def sequence_domain_sums(values: tf.Tensor, domains: tf.Tensor, mask: tf.Tensor, num_domains: int) -> tf.Tensor:
    """[D]: the sum over this replica's sequences (the first axis) of each sequence's mean of `values` over its
    unmasked domain-d positions (0 where it has none). Masked positions contribute nothing, NaN and inf included."""
    rows = tf.shape(values)[0]
    flat_mask = tf.reshape(mask, [rows, -1])
    flat_values = tf.where(flat_mask, tf.reshape(values, [rows, -1]), tf.zeros_like(tf.reshape(values, [rows, -1])))
    onehot = tf.one_hot(tf.reshape(domains, [rows, -1]) - 1, num_domains) * tf.cast(flat_mask, tf.float32)[..., tf.newaxis]
    sums = tf.einsum("bp,bpd->bd", flat_values, onehot)
    return tf.reduce_sum(tf.math.divide_no_nan(sums, tf.reduce_sum(onehot, axis=1)), axis=0)


def reduce(
    values: tf.Tensor,
    domains: tf.Tensor,
    mask: tf.Tensor,
    num_domains: int,
    reduction: str,
    num_sequences: tf.Tensor,
    weights: tf.Tensor | None = None,
) -> tf.Tensor:
    """One loss from per-position losses (see the module docstring).

    values, domains (1..D), mask: the same shape; num_sequences: this replica's batch size; weights [D] or
    None (= 1 for every domain). Under tf.distribute this is the replica's share: its own positions' sum
    over the global normaliser, so the shares (and their gradients) add up to the global batch's loss.
    """
    if reduction == "sequence_domain_mean":
        means = sequence_domain_sums(values, domains, mask, num_domains)
        means = means if weights is None else means * weights
        return tf.reduce_sum(means) / tf.maximum(global_sum(tf.cast(num_sequences, tf.float32)), 1.0)
    sums, counts = domain_sums(values, domains, mask, num_domains)
    counts = global_sum(counts)
    if weights is not None:
        sums = sums * weights
    if reduction == "sum":
        return tf.reduce_sum(sums) / tf.maximum(global_sum(tf.cast(num_sequences, tf.float32)), 1.0)
    if reduction == "mean":
        return tf.math.divide_no_nan(tf.reduce_sum(sums), tf.reduce_sum(counts))
    if reduction == "domain_mean":
        present = tf.cast(counts > 0, tf.float32)
        return tf.math.divide_no_nan(tf.reduce_sum(tf.math.divide_no_nan(sums, counts)), tf.reduce_sum(present))
    raise ValueError(f"unknown loss_reduction {reduction!r}; choose one of {REDUCTIONS}")


def negative_transfer_gap(
    single_loss: tf.Tensor,
    cross_loss: tf.Tensor,
    target_domain: tf.Tensor,
    mask: tf.Tensor,
    num_domains: int,
    reduction: str = "mean",
    num_sequences: tf.Tensor | int = 1,
) -> tf.Tensor:
    """phi(d) = sum over domain-d positions t of (l_t^d - l_t) (Eq. 10) [D].

    `single_loss` holds, at each position of X, the single-domain loss of the same target (already
    aligned through single_index). With the "sum" reduction phi is Eq. 10's sum per sequence, averaged
    over the batch's sequences; with "sequence_domain_mean" each sequence's mean over its domain-d positions,
    averaged over the batch's sequences; otherwise the mean over the domain's positions. Negative phi(d) = the
    cross-domain view hurts domain d.
    """
    if reduction == "sequence_domain_mean":
        means = global_sum(sequence_domain_sums(single_loss - cross_loss, target_domain, mask, num_domains))
        return means / tf.maximum(global_sum(tf.cast(num_sequences, tf.float32)), 1.0)
    sums, counts = domain_sums(single_loss - cross_loss, target_domain, mask, num_domains)
    sums, counts = global_sum(sums), global_sum(counts)  # a measurement: the same on every replica
    if reduction == "sum":
        return sums / tf.maximum(global_sum(tf.cast(num_sequences, tf.float32)), 1.0)
    return tf.math.divide_no_nan(sums, counts)


def relative_ntg(
    previous_lambda: tf.Tensor, phi: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor, temperature: tf.Tensor
) -> tf.Tensor:
    """lambda_d <- softmax(alpha * lambda_d + beta * phi(d); delta) over domains (Eq. 11).

    The previous lambda and phi are measurements, not paths for gradients: both are stopped, so
    alpha, beta (and delta, when learned) learn only through how lambda weights the cross loss (Eq. 12).
    """
    logits = alpha * tf.stop_gradient(previous_lambda) + beta * tf.stop_gradient(phi)
    return tf.nn.softmax(logits / temperature)


def lc_ntg_weights(lam: tf.Tensor, scale: str) -> tf.Tensor:
    """Per-domain weights of the cross loss (Eq. 12): lambda ("one") or |D| * lambda ("domains", mean one)."""
    if scale == "one":
        return lam
    return lam * tf.cast(tf.shape(lam)[0], lam.dtype)


def sc_mim_loss(
    single_repr: tf.Tensor, cross_repr: tf.Tensor, present: tf.Tensor, bilinear: tf.Tensor, temperature: float = 1.0
) -> tf.Tensor:
    """SC-MIM InfoNCE per (domain, user) (Eq. 14-17): -[rho(s_u, c_u) - log sum_{u'} exp rho(s_u', c_u)].

    single_repr/cross_repr: [B, D, r] pooled (Y^d)^single and (Y^d)^cross of each user;
    present: [B, D] bool, the user has domain-d positions; rho(U, V) = sigma(U^T W^H V) / temperature.
    Other users of the batch with domain d are the negatives. Returns [D, B] (meaningful where present).
    """
    projected = tf.einsum("bdr,rs->bds", single_repr, bilinear)  # s_u'^T W^H
    rho = tf.sigmoid(tf.einsum("vds,uds->duv", projected, cross_repr)) / temperature  # [D, u, u']
    present_t = tf.transpose(present)  # [D, B]
    valid_pair = tf.logical_and(present_t[:, :, tf.newaxis], present_t[:, tf.newaxis, :])
    masked = tf.where(valid_pair, rho, tf.fill(tf.shape(rho), tf.constant(-1e9, rho.dtype)))
    positive = tf.linalg.diag_part(rho)  # [D, B]
    return tf.reduce_logsumexp(masked, axis=-1) - positive
