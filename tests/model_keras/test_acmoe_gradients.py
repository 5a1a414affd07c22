"""Eq. 2 and 4: tf.stop_gradient routes each task's gradient to its own experts only."""

import tensorflow as tf


def expert_gradient_norms(model, batch, term):
    experts = model.acmoe.experts
    with tf.GradientTape() as tape:
        loss = model.compute_losses(batch, training=False)[term]
    grads = tape.gradient(loss, [e.trainable_variables for e in experts])
    return [sum(float(tf.norm(g)) for g in gs if g is not None) for gs in grads]


def test_single_domain_loss_trains_only_experts_j_plus_1_to_k(make_model, batch):
    model = make_model(num_experts=4, num_cross_experts=1)
    norms = expert_gradient_norms(model, batch, "single_loss")
    assert norms[0] == 0.0  # expert 1 (k <= j) is behind SG for the single-domain task
    assert all(n > 0 for n in norms[1:])


def test_cross_domain_loss_trains_only_experts_1_to_j(make_model, batch):
    model = make_model(num_experts=5, num_cross_experts=3)
    norms = expert_gradient_norms(model, batch, "cross_loss")
    assert all(n > 0 for n in norms[:3])
    assert norms[3:] == [0.0, 0.0]
    single = expert_gradient_norms(model, batch, "single_loss")
    assert single[:3] == [0.0, 0.0, 0.0] and all(n > 0 for n in single[3:])


def test_without_acmoe_every_expert_learns_from_both_tasks(make_model, batch):
    model = make_model(num_experts=4, num_cross_experts=1, use_acmoe=False)
    for term in ("single_loss", "cross_loss"):
        assert all(n > 0 for n in expert_gradient_norms(model, batch, term))


def test_gates_and_towers_get_gradient_from_their_own_task(make_model, batch):
    model = make_model()
    with tf.GradientTape(persistent=True) as tape:
        terms = model.compute_losses(batch, training=False)
    assert tape.gradient(terms["single_loss"], model.acmoe.cross_gate.kernel) is None
    assert tape.gradient(terms["cross_loss"], model.acmoe.single_gates.kernel) is None
    assert float(tf.norm(tape.gradient(terms["cross_loss"], model.cross_tower.w1))) > 0
    assert float(tf.norm(tape.gradient(terms["single_loss"], model.single_towers.w1))) > 0


def test_the_fused_loss_trains_both_towers_and_keeps_the_split(make_model, batch):
    """fused_loss_weight: the loss of y^cross + y^single reaches both towers and gates, every expert through its own
    side of the stop-gradient (1..j via the cross mixture, j+1..K via the single one), and adds to the total."""
    model = make_model(num_experts=4, num_cross_experts=1, fused_loss_weight=0.5)
    with tf.GradientTape(persistent=True) as tape:
        terms = model.compute_losses(batch, training=False)
    assert "fused_loss" in model.loss_names() and "fused_loss" not in make_model().loss_names()
    expected = model.config.eta * (terms["single_loss"] + terms["cross_loss"]) + 0.5 * terms["fused_loss"]
    assert abs(float(terms["loss"] - expected)) < 1e-4
    for weights in (model.cross_tower.w1, model.single_towers.w1, model.acmoe.cross_gate.kernel,
                    model.acmoe.single_gates.kernel):
        assert float(tf.norm(tape.gradient(terms["fused_loss"], weights))) > 0
    assert all(n > 0 for n in expert_gradient_norms(model, batch, "fused_loss"))
