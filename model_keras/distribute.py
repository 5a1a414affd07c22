"""Training on several devices or machines with tf.distribute, computing what one worker would.

`distribution` (a ModelConfig setting) picks the strategy: "none", "mirrored" (the local devices)
or "multi_worker" (MultiWorkerMirroredStrategy; each worker's TF_CONFIG names the cluster, as the
Kubeflow Training Operator's TFJob sets it). Every global batch is the one a single worker would
take (the same shuffle on every worker), cut into contiguous per-replica blocks; losses are
normalised by global sums (model_keras.losses.global_sum), SC-MIM's in-batch negatives are gathered
from every replica, negatives are drawn from the step and the global row, so one epoch on N
workers gives the losses and weights of one epoch on one worker with the same global batch.
The chief (worker 0) writes the outputs; the others write into a scratch folder that is removed.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("none", "mirrored", "multi_worker")


def make_strategy(kind: str) -> tf.distribute.Strategy:
    """The tf.distribute strategy named by the `distribution` setting."""
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def worker() -> tuple[int, int]:
    """(this worker's index, number of workers) from TF_CONFIG ((0, 1) without one)."""
    config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    workers = config.get("cluster", {}).get("worker", [])
    task = config.get("task", {})
    return (int(task.get("index", 0)) if task.get("type", "worker") == "worker" else 0), max(len(workers), 1)


def is_chief() -> bool:
    """True on worker 0 (and without TF_CONFIG): the worker that writes the outputs."""
    return worker()[0] == 0


def replica_rows(batch_size) -> tuple[tf.Tensor, tf.Tensor]:
    """(first global row of this replica's block, global batch size) inside a replica context."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return tf.constant(0, tf.int32), tf.cast(batch_size, tf.int32)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return replica * tf.cast(batch_size, tf.int32), tf.cast(batch_size, tf.int32) * context.num_replicas_in_sync


def gather_replicas(value: tf.Tensor) -> tf.Tensor:
    """Every replica's rows of `value`, in replica order (differentiable); the value itself on one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def num_replicas() -> int:
    """Replicas in sync in this replica context (1 outside one)."""
    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def distributed_dataset(strategy: tf.distribute.Strategy, make, global_batch: int, examples: int):
    """Each worker's share of every global batch: the dataset `make(batch_size)` (shuffled alike on every
    worker) batched globally, cut to whole batches, and this worker's contiguous block dealt to its replicas.
    Returns (distributed dataset, steps per epoch)."""
    replicas = strategy.num_replicas_in_sync
    if global_batch % replicas:
        raise ValueError(f"batch_size {global_batch} must be a multiple of the {replicas} replicas")
    steps = examples // global_batch
    if steps < 1:
        raise ValueError(f"batch_size {global_batch} is larger than the {examples} training examples")

    def per_worker(context: tf.distribute.InputContext):
        block = global_batch // context.num_input_pipelines
        first = context.input_pipeline_id * block
        per_replica = context.get_per_replica_batch_size(global_batch)
        # Only whole global batches (with length-sorted batches the last of each epoch is partial wherever the
        # shuffle puts it): every worker then cuts the same blocks and runs the same number of steps.
        dataset = make(global_batch).filter(lambda batch: tf.shape(batch["item"])[0] == global_batch).take(steps)
        dataset = dataset.map(lambda batch: {k: v[first : first + block] for k, v in batch.items()})
        # Repeated: with steps_per_epoch, Keras keeps one iterator across epochs (a finite one would end after
        # the first epoch and every later epoch would run no step); each repetition reshuffles as a new epoch does.
        return dataset.unbatch().batch(per_replica, drop_remainder=True).repeat()

    return strategy.distribute_datasets_from_function(per_worker), steps
