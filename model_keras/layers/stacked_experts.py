"""Inference of the K transformer experts as one stacked computation (the serving encoder's fast path).

At serving time a request is one short sequence, so the K experts' ~30 small ops per block each cost
more in dispatch than in arithmetic: on 2 cores, 4 experts x 2 blocks at batch 1, T=50, r=64 took
2.9 ms, nearly all of it per-op overhead. Here every weight gets a leading expert axis (stacked once,
at export) and each op runs for all K experts at once, so a block is ~30 ops whatever K is.

The math is TransformerBlock's (Eq. 5-7) in inference mode, term by term: Keras MultiHeadAttention's
projections, 1/sqrt(d) query scaling, masked softmax (masked keys get -1e9 added, as Keras' Softmax
does), output projection, LN(q + MSA), LN(h + FFN) with exact GELU; then the cross gate's mixture
(Eq. 4 at the last position). No dropout, no stop-gradient: both are identities at inference.
`tests/model_keras/test_stacked_experts.py` checks the outputs against the per-expert layers.
"""

from __future__ import annotations

import math

import tensorflow as tf

from model_keras.layers.transformer import causal_padding_mask

_NEG = -1e9  # what Keras' Softmax adds to masked attention logits in float32


def _stack(tensors) -> tf.Variable:
    return tf.Variable(tf.stack([tf.convert_to_tensor(t) for t in tensors]), trainable=False)


class StackedExperts(tf.Module):
    """Copies of the experts' weights with a leading K axis, and the last-position forward pass over them."""

    def __init__(self, acmoe, name: str = "stacked_experts"):
        super().__init__(name=name)
        experts = acmoe.experts
        self.key_dim = acmoe.embed_dim // acmoe.num_heads  # heads come with the kernels' shapes
        self.num_blocks = len(experts[0].blocks)
        self.cross_gate, self.single_gates = acmoe.cross_gate, acmoe.single_gates
        self.blocks = []
        for index in range(self.num_blocks):
            blocks = [expert.blocks[index] for expert in experts]
            attention = [b.attention for b in blocks]
            weights = {}
            for part in ("query", "key", "value", "output"):
                dense = [getattr(a, f"_{part}_dense") for a in attention]
                weights[part] = _stack(d.kernel for d in dense)
                weights[part + "_bias"] = _stack(d.bias for d in dense)
            for part in ("ffn_in", "ffn_out"):
                dense = [getattr(b, part) for b in blocks]
                weights[part] = _stack(d.kernel for d in dense)
                weights[part + "_bias"] = _stack(d.bias for d in dense)
            for part in ("norm1", "norm2"):
                norms = [getattr(b, part) for b in blocks]
                weights[part + "_gamma"] = _stack(n.gamma for n in norms)
                weights[part + "_beta"] = _stack(n.beta for n in norms)
                weights[part + "_epsilon"] = norms[0].epsilon
            self.blocks.append(weights)

    @staticmethod
    def _norm(x, gamma, beta, epsilon):
        mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
        return (x - mean) * tf.math.rsqrt(var + epsilon) * gamma[:, tf.newaxis, tf.newaxis] + beta[
            :, tf.newaxis, tf.newaxis
        ]

    def _block(self, w, z, mask, last_only):
        """z [K, B, S, r] -> [K, B, Q, r] (Q = 1 with `last_only`, else S)."""
        query = z[:, :, -1:] if last_only else z
        mask = mask[:, -1:] if last_only else mask  # [B, Q, S]
        q = tf.einsum("kbqr,krhd->kbqhd", query, w["query"]) + w["query_bias"][:, tf.newaxis, tf.newaxis]
        k = tf.einsum("kbsr,krhd->kbshd", z, w["key"]) + w["key_bias"][:, tf.newaxis, tf.newaxis]
        v = tf.einsum("kbsr,krhd->kbshd", z, w["value"]) + w["value_bias"][:, tf.newaxis, tf.newaxis]
        q = q * (1.0 / math.sqrt(float(self.key_dim)))
        logits = tf.einsum("kbshd,kbqhd->kbhqs", k, q)
        logits += (1.0 - tf.cast(mask, logits.dtype))[tf.newaxis, :, tf.newaxis] * _NEG
        context = tf.einsum("kbhqs,kbshd->kbqhd", tf.nn.softmax(logits, axis=-1), v)
        attended = tf.einsum("kbqhd,khdr->kbqr", context, w["output"]) + w["output_bias"][:, tf.newaxis, tf.newaxis]
        h = self._norm(query + attended, w["norm1_gamma"], w["norm1_beta"], w["norm1_epsilon"])
        inner = tf.nn.gelu(
            tf.einsum("kbqr,krs->kbqs", h, w["ffn_in"]) + w["ffn_in_bias"][:, tf.newaxis, tf.newaxis], approximate=False
        )
        out = tf.einsum("kbqs,ksr->kbqr", inner, w["ffn_out"]) + w["ffn_out_bias"][:, tf.newaxis, tf.newaxis]
        return self._norm(h + out, w["norm2_gamma"], w["norm2_beta"], w["norm2_epsilon"])

    def _mixed_last(self, emb, ids, gates):
        """sum_k gates[:, k] f_k(emb) at the last position [B, 1, r] (gates [B, K])."""
        mask = causal_padding_mask(ids)
        num_experts = tf.shape(gates)[-1]
        z = tf.broadcast_to(emb[tf.newaxis], tf.concat([[num_experts], tf.shape(emb)], axis=0))
        for index, weights in enumerate(self.blocks):
            z = self._block(weights, z, mask, last_only=index == self.num_blocks - 1)
        return tf.einsum("bk,kbqr->bqr", gates, z)

    def cross_last(self, cross_emb, cross_ids):
        """f^cross of the last position [B, 1, r]: AsymmetricMixtureOfExperts.cross_only's value at inference."""
        return self._mixed_last(cross_emb, cross_ids, self.cross_gate(cross_emb[:, tf.newaxis], causal=False)[:, 0])

    def single_last(self, emb, ids, domain_index):
        """f^d of the last position [B, 1, r]: AsymmetricMixtureOfExperts.single_last's value."""
        return self._mixed_last(emb, ids, self.single_gates.for_rows(emb, domain_index))
