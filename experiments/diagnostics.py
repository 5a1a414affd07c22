"""Why a SyNCRec variant wins or loses: what its gates do and where each task's gradient goes.

For a trained run (a folder run_fn wrote, with model_config.json and best/weights):
  gate usage   the mean weight each task's gate gives each expert on the valid split (Eq. 3), and the
               gates' mean entropy (log K = uniform, 0 = one expert)
  gradients    the norm of each loss term's gradient on each expert's weights, over a few train batches:
               with ACMoE, the single-domain terms reach experts j+1..K only and the cross term 1..j only
  lambda, phi  their last values (Eq. 10-11)
  towers       NDCG@10 per domain on valid and test through the cross tower (Eq. 19), through the
               single-domain towers, through both summed, and as served (per domain the tower chosen on
               valid after training, `prediction_towers`): where negative transfer is real, the single
               towers hold accuracy that Eq. 19 never uses
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf

from experiments.runner import Variant, run_folder
from model_keras.config import ModelConfig
from model_keras.evaluation import EvalProtocol, ModelScorer, rank_users_by_view
from model_keras.input_fn import make_dataset
from model_keras.metrics import domain_rows
from model_keras.model import TOWERS
from model_keras.train import apply_prediction_towers, load_trained
from schemas.vocabulary import Vocabulary


def find_run(out: str, variant: Variant, config: ModelConfig, protocol: EvalProtocol) -> str:
    """The run folder of `variant` trained with `config`'s training settings and seed, selected under `protocol`:
    the folder compare, ablation and negative-transfer wrote for the same --set flags (runner.run_folder), never
    merely the newest run of that variant, which may have other settings."""
    folder = run_folder(out, variant, config, protocol)
    if not os.path.isfile(os.path.join(folder, "model_config.json")):
        raise ValueError(
            f"no finished run of {variant.name!r} seed {config.seed} with these settings under {out}/runs "
            f"(it would be {folder}); run the experiment first, or pass the --set flags and protocol it ran with"
        )
    return folder


def gate_usage(model, examples: str, vocabulary: Vocabulary, batches: int = 8) -> dict:
    """{task: {"weights": mean gate weight per expert, "entropy": mean entropy}} on the valid split."""
    single, cross = [], []
    for batch in make_dataset(examples, "valid", vocabulary.num_domains, 256).take(batches):
        g_single, g_cross = model.encode(batch, training=False).gates
        mask = tf.reduce_any(batch["single_target"] > 0, axis=-1)  # [B, D]: the user has the domain
        if g_single.shape.rank == 4:  # causal gates: one distribution a step; take the last step
            g_single, g_cross = g_single[:, :, -1], g_cross[:, -1]
        single.append([g_single[:, d][mask[:, d]].numpy() for d in range(vocabulary.num_domains)])
        cross.append(g_cross.numpy())

    def summary(rows):
        rows = np.concatenate(rows) if rows else np.zeros((0, model.config.num_experts))
        entropy = -np.sum(rows * np.log(np.maximum(rows, 1e-12)), axis=1)
        weights = [round(float(w), 3) for w in rows.mean(axis=0)]
        return {"weights": weights, "entropy": float(entropy.mean()) if len(rows) else 0.0}

    tasks = {f"single/{name}": summary([b[d] for b in single]) for d, name in enumerate(vocabulary.domain_names)}
    tasks["cross"] = summary(cross)
    return tasks


def expert_gradients(model, examples: str, vocabulary: Vocabulary, batches: int = 4) -> dict:
    """{loss term: [gradient norm on expert 1..K]} summed over a few train batches (no dropout)."""
    present = [term for term in model.loss_names() if term != "loss"]  # the model's terms (mim_loss with SC-MIM)
    norms = {term: np.zeros(model.config.num_experts) for term in present}
    experts = model.acmoe.experts
    for batch in make_dataset(examples, "train", vocabulary.num_domains, 128).take(batches):
        with tf.GradientTape(persistent=True) as tape:
            terms = model.compute_losses(batch, training=False)
        for term in present:
            grads = tape.gradient(terms[term], [e.trainable_variables for e in experts])
            norms[term] += [
                float(tf.linalg.global_norm([g for g in gs if g is not None]))
                if any(g is not None for g in gs)
                else 0.0
                for gs in grads
            ]
        del tape
    return {term: [round(float(v), 4) for v in values] for term, values in norms.items()}


def tower_accuracy(model, examples: str, vocabulary: Vocabulary, protocol: EvalProtocol) -> dict:
    """split -> tower ("cross", "single", "both" summed, and "served": per domain the tower the model chose) ->
    domain (and "all") -> NDCG@10."""
    scorer = ModelScorer(model, ("cross", "single", "both", "served"))  # one trace, every view, both splits
    towers = {}
    for split in ("valid", "test"):
        for view, ranked in rank_users_by_view(scorer, examples, split, vocabulary, protocol).items():
            run = ranked.result(vocabulary)
            towers.setdefault(split, {})[view] = {d: round(r["NDCG@10"], 4) for d, r in domain_rows(run).items()}
    return towers


def diagnose(
    run_dir: str, examples: str, protocol: EvalProtocol = EvalProtocol(), settings: ModelConfig | None = None
) -> dict:
    """Gate usage, expert gradients, the last lambda/phi and each tower's accuracy of one trained SyNCRec run,
    and the tower serving each domain."""
    vocabulary = Vocabulary.load(os.path.join(examples, "vocabulary.json"))
    model = load_trained(run_dir, examples)
    # The post-training settings asked for (else the run's own), applied again, so "served" is what the run
    # serves under them: the same choice run_fn makes for the same settings.
    apply_prediction_towers(model, settings or model.config, examples, vocabulary, protocol)
    with open(os.path.join(run_dir, "training.json"), encoding="utf-8") as handle:
        history = json.load(handle)["loss_history"]
    last = {k: round(v[-1], 4) for k, v in history.items() if k.startswith(("lambda/", "phi/"))}
    config = model.config
    return {
        "run": run_dir,
        "experts": config.num_experts,
        "cross_experts_j": config.num_cross_experts,
        "stop_gradient": config.uses_stop_gradient,
        "gates": gate_usage(model, examples, vocabulary),
        "gradients": expert_gradients(model, examples, vocabulary),
        "last": last,
        "towers": tower_accuracy(model, examples, vocabulary, protocol),
        "prediction_towers": {
            d: TOWERS[int(flag)] for d, flag in zip(vocabulary.domain_names, model.prediction_tower.numpy())
        },
    }


def _table(title: str, header: str, rule: str, rows: list[str]) -> list[str]:
    """A Markdown section: a blank line, the title, the header and its rule, then the rows."""
    return ["", f"### {title}", "", header, rule, *rows]


def markdown(results: dict) -> str:
    """Three tables: gate usage and entropy per task, gradient norms per loss term and expert, and NDCG@10
    per domain through each tower."""
    gates = [
        f"| {name} | {task} | {usage['weights']} | {usage['entropy']:.3f} |"
        for name, result in results.items()
        for task, usage in result["gates"].items()
    ]
    gradients = [
        f"| {name} | {term} | {values} |"
        for name, result in results.items()
        for term, values in result["gradients"].items()
    ]
    domains = list(next(iter(results.values()))["towers"]["valid"]["cross"]) if results else []
    towers = [
        f"| {name} | {split} | {view} | " + " | ".join(f"{by_domain[d]:.4f}" for d in domains) + " |"
        for name, result in results.items()
        for split, by_view in result["towers"].items()
        for view, by_domain in by_view.items()
    ]
    lines = [
        *_table(
            "Gate usage (mean weight per expert on valid) and entropy",
            "| model | task | expert weights | entropy (log K = uniform) |",
            "|---|---|---|---:|",
            gates,
        ),
        *_table(
            "Gradient norm of each loss term on each expert (4 train batches)",
            "| model | term | expert 1..K |",
            "|---|---|---|",
            gradients,
        ),
        *_table(
            "NDCG@10 per domain through each tower (served: per domain the tower chosen on valid)",
            "| model | split | tower | " + " | ".join(domains) + " |",
            "|---|---|---|" + "---:|" * len(domains),
            towers,
        ),
        "",
        "last lambda/phi: " + "; ".join(f"{name} {result['last']}" for name, result in results.items()),
        "",
        "served towers: " + "; ".join(f"{name} {result['prediction_towers']}" for name, result in results.items()),
    ]
    return "\n".join(lines[1:])
