"""Losses of SyNCRec (§4.3-4.5): pairwise ranking, NTG, relative NTG, LC-NTG, SC-MIM.

All functions are pure TensorFlow on explicit masks so each is testable on hand-made tensors.
Conventions: per-position losses are positive numbers to minimise (the paper writes the
log-likelihood log sigma(.), we minimise its negative). Per-domain terms are means over that
domain's positions in the batch; sums over domains in Eq. 18 are means over the domains present,
so the three terms of Eq. 18 share one scale (the official code does the same for L_single).
"""
import tensorflow as tf


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


def sample_negatives(target_domain: tf.Tensor, domain_start: tf.Tensor, domain_count: tf.Tensor, seed=None) -> tf.Tensor:
    """One item per position drawn uniformly from V^d of the target's domain (OOV excluded).

    domain_start/domain_count are indexed by domain id (id 0 = none -> PAD item 0).
    """
    start = tf.gather(domain_start, target_domain)
    count = tf.gather(domain_count, target_domain)
    u = tf.random.uniform(tf.shape(target_domain), seed=seed)
    return start + tf.cast(tf.floor(u * tf.cast(count, tf.float32)), target_domain.dtype) * tf.cast(count > 0, target_domain.dtype)


def domain_means(values: tf.Tensor, domains: tf.Tensor, mask: tf.Tensor, num_domains: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(mean of `values` per domain 1..D over unmasked positions [D], position counts [D]).

    Masked positions contribute nothing, whatever their value (NaN and inf included).
    """
    flat_mask = tf.reshape(mask, [-1])
    flat_values = tf.boolean_mask(tf.reshape(values, [-1]), flat_mask)
    flat_domains = tf.boolean_mask(tf.reshape(domains, [-1]), flat_mask) - 1
    sums = tf.math.unsorted_segment_sum(flat_values, flat_domains, num_domains)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(flat_values), flat_domains, num_domains)
    return tf.math.divide_no_nan(sums, counts), counts


def negative_transfer_gap(single_loss: tf.Tensor, cross_loss: tf.Tensor, target_domain: tf.Tensor, mask: tf.Tensor, num_domains: int) -> tf.Tensor:
    """phi(d) = mean over domain-d positions t of (l_t^d - l_t) (Eq. 10, as a mean).

    `single_loss` holds, at each position of X, the single-domain loss of the same target (already
    aligned through single_index). Negative phi(d) = the cross-domain view hurts domain d.
    """
    phi, _ = domain_means(single_loss - cross_loss, target_domain, mask, num_domains)
    return phi


def relative_ntg(previous_lambda: tf.Tensor, phi: tf.Tensor, alpha: tf.Tensor, beta: tf.Tensor, temperature: tf.Tensor) -> tf.Tensor:
    """lambda_d <- softmax(alpha * lambda_d + beta * phi(d); delta) over domains (Eq. 11).

    The previous lambda and phi are measurements, not paths for gradients: both are stopped, so
    alpha, beta and delta learn only through how lambda weights the cross-domain loss (Eq. 12).
    """
    logits = alpha * tf.stop_gradient(previous_lambda) + beta * tf.stop_gradient(phi)
    return tf.nn.softmax(logits / temperature)


def lc_ntg_cross_loss(cross_domain_means: tf.Tensor, lam: tf.Tensor, present: tf.Tensor) -> tf.Tensor:
    """L_cross^lc = sum_d lambda_d L_cross^d over the domains present in the batch (Eq. 12)."""
    weights = lam * tf.cast(present, lam.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(weights * cross_domain_means), tf.reduce_sum(weights))


def sc_mim_loss(single_repr: tf.Tensor, cross_repr: tf.Tensor, present: tf.Tensor, bilinear: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
    """SC-MIM InfoNCE per domain (Eq. 14-17): -[rho(s_u, c_u) - log sum_{u'} exp rho(s_u', c_u)].

    single_repr/cross_repr: [B, D, r] pooled (Y^d)^single and (Y^d)^cross of each user;
    present: [B, D] bool, the user has domain-d positions; rho(U, V) = sigma(U^T W^H V) / temperature.
    Other users of the batch with domain d are the negatives. Returns the mean loss per domain [D].
    """
    projected = tf.einsum("bdr,rs->bds", single_repr, bilinear)  # s_u'^T W^H
    rho = tf.sigmoid(tf.einsum("vds,uds->duv", projected, cross_repr)) / temperature  # [D, u, u']
    present_t = tf.transpose(present)  # [D, B]
    valid_pair = tf.logical_and(present_t[:, :, tf.newaxis], present_t[:, tf.newaxis, :])
    masked = tf.where(valid_pair, rho, tf.fill(tf.shape(rho), tf.constant(-1e9, rho.dtype)))
    positive = tf.linalg.diag_part(rho)  # [D, B]
    per_user = tf.reduce_logsumexp(masked, axis=-1) - positive
    weights = tf.cast(present_t, rho.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(per_user * weights, axis=-1), tf.reduce_sum(weights, axis=-1))
