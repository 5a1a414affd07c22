"""Server-side batching with TF Serving's rules (tensorflow_serving/batching/batching_session.cc).

TF Serving started with `--enable_batching --batching_parameters_file=F` wraps every model's session in
a BatchingSession: concurrent Run() calls of one signature are queued, merged along dimension 0 into one
call, and the outputs split back. The rules a model must live with, all applied here:
- every input has rank >= 1 and all inputs of one request share dimension 0 (else INVALID_ARGUMENT);
- a request larger than max_batch_size is refused; a full queue (max_enqueued_batches) is UNAVAILABLE;
- with pad_variable_length_inputs, each request's tensor is padded at the end of every other dimension to
  the largest size in the batch, with that tensor's first element; without it, tensors whose other
  dimensions differ fail the whole batch (FAILED_PRECONDITION);
- with allowed_batch_sizes, the batch is padded up to the next allowed size with the first row of the last
  request;
- every output must have rank >= 1 and dimension 0 equal to the merged batch, else the batch fails;
- an error of the merged call is every merged request's error.
Why not TensorFlow's BatchFunction kernel: TF Serving does not use it for --enable_batching, and it has
no pad_variable_length_inputs (it refuses tensors of different widths), so it would hide exactly the
padding behaviour that corrupted batched histories. The scheduling is BasicBatchScheduler's: a batch
runs when full, or batch_timeout_micros after its first request, on one of num_batch_threads threads.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np

from serving.errors import BadRequest, FailedPrecondition, ServingError, Unavailable

BATCHING_FILE = "batching_parameters.txt"


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's BatchingParameters (session_bundle_config.proto); the defaults are its defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple = ()
    pad_variable_length_inputs: bool = False
    thread_pool_name: str = "batch_threads"

    @classmethod
    def parse(cls, text: str, source: str = BATCHING_FILE) -> "BatchingParameters":
        """Read the text proto TF Serving reads; ValueError naming the file and the field otherwise."""
        known = {f.name for f in fields(cls)}
        values: dict = {"allowed_batch_sizes": []}
        body = re.sub(r"#.*", "", text)
        pattern = re.compile(r'\s*(\w+)\s*(?:\{\s*value\s*:\s*(\w+)\s*\}|:\s*("[^"]*"|\w+))')
        position = 0
        while body[position:].strip():
            match = pattern.match(body, position)
            if not match:
                raise ValueError(f"{source}: cannot parse {body[position:].strip()[:40]!r} (TF Serving would not start)")
            name, raw = match.group(1), match.group(2) or match.group(3)
            position = match.end()
            if name not in known:
                raise ValueError(f"{source}: unknown field {name!r}; TF Serving knows {sorted(known)}")
            if name == "allowed_batch_sizes":
                values[name].append(int(raw))
            elif name == "pad_variable_length_inputs":
                if raw not in ("true", "false"):
                    raise ValueError(f"{source}: pad_variable_length_inputs must be true or false (got {raw})")
                values[name] = raw == "true"
            elif name == "thread_pool_name":
                values[name] = raw.strip('"')
            else:
                values[name] = int(raw)
        values["allowed_batch_sizes"] = tuple(values["allowed_batch_sizes"])
        params = cls(**values)
        params.check(source)
        return params

    @classmethod
    def load(cls, path: str) -> "BatchingParameters":
        with open(path, encoding="utf-8") as handle:
            return cls.parse(handle.read(), path)

    def check(self, source: str) -> None:
        """The checks TF Serving makes when it reads the file."""
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{source}: {name} must be >= 1 (got {getattr(self, name)})")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ValueError(
                f"{source}: allowed_batch_sizes must increase and end with max_batch_size ({self.max_batch_size})"
            )

    def padded_size(self, size: int) -> int:
        """The batch size after rounding up to the next allowed size (unchanged without allowed sizes)."""
        return next((s for s in self.allowed_batch_sizes if s >= size), size)


def request_batch_size(inputs: dict[str, np.ndarray]) -> int:
    """Dimension 0 shared by every input of one request (BatchingSession's ComputeInputSize)."""
    sizes = set()
    for array in inputs.values():
        if array.ndim == 0:
            raise BadRequest("Batching Run() input tensors must have at least one dimension")
        sizes.add(array.shape[0])
    if len(sizes) > 1:
        raise BadRequest("Batching Run() input tensors must have equal 0th-dimension size")
    return sizes.pop() if sizes else 0


def pad_to(array: np.ndarray, dims: tuple) -> np.ndarray:
    """`array` grown at the end of every dimension but the first to `dims`, filled with its first element."""
    if tuple(array.shape[1:]) == tuple(dims):
        return array
    fill = array.flat[0] if array.size else np.zeros((), array.dtype).item()
    padded = np.full((array.shape[0], *dims), fill, dtype=array.dtype)
    padded[tuple(slice(0, s) for s in array.shape)] = array
    return padded


def merge_inputs(requests: list[dict[str, np.ndarray]], params: BatchingParameters) -> tuple[dict, int]:
    """The merged inputs of one batch and its size after padding (MergeInputTensors)."""
    total = sum(request_batch_size(r) for r in requests)
    extra = params.padded_size(total) - total
    merged = {}
    for name in requests[0]:
        arrays = [r[name] for r in requests]
        if len({a.ndim for a in arrays}) > 1:
            raise FailedPrecondition(f"Tensors with name '{name}' from different tasks have different ranks")
        if params.pad_variable_length_inputs:
            dims = tuple(np.max([a.shape[1:] for a in arrays], axis=0)) if arrays[0].ndim > 1 else ()
            arrays = [pad_to(a, dims) for a in arrays]
        elif any(a.shape[1:] != arrays[0].shape[1:] for a in arrays):
            raise FailedPrecondition(
                f"Tensors with name '{name}' from different tasks have different shapes and padding is turned off."
                "Set pad_variable_length_inputs to true, or ensure that all tensors with the same name"
                "have equal dimensions starting with the first dim."
            )
        if extra:
            arrays.append(np.repeat(arrays[-1][:1], extra, axis=0))
        merged[name] = np.concatenate(arrays, axis=0)
    return merged, total + extra


def split_outputs(outputs: dict[str, np.ndarray], sizes: list[int], merged_size: int) -> list[dict]:
    """Each request's rows of every output (SplitOutputTensors), padding rows dropped."""
    for array in outputs.values():
        if array.ndim == 0:
            raise FailedPrecondition("Batched output tensor has 0 dimensions")
        if array.shape[0] != merged_size:
            raise FailedPrecondition(
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes of the "
                "input tensors"
            )
    bounds = np.cumsum([0] + sizes)
    return [{k: v[bounds[i] : bounds[i + 1]] for k, v in outputs.items()} for i in range(len(sizes))]


@dataclass
class _Task:
    inputs: dict
    size: int
    done: threading.Event = field(default_factory=threading.Event)
    outputs: dict | None = None
    error: Exception | None = None


@dataclass
class _Batch:
    started: float
    tasks: list = field(default_factory=list)
    size: int = 0
    closed: bool = False


class BatchScheduler:
    """Queues one signature's requests and runs them merged; `run` blocks until its request is answered.

    `stats` counts batches run and the most requests merged in one (tests read it to see batching happen)."""

    def __init__(self, params: BatchingParameters, process: Callable[[dict], dict]):
        self.params, self.process = params, process
        self._batches: collections.deque[_Batch] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.stats = {"batches": 0, "most_requests_merged": 0}
        self._threads = [
            threading.Thread(target=self._work, daemon=True, name=f"{params.thread_pool_name}-{i}")
            for i in range(params.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        size = request_batch_size(inputs)
        if size > self.params.max_batch_size:
            raise BadRequest(
                f"Task size {size} is larger than maximum input batch size {self.params.max_batch_size}"
            )
        task = _Task(inputs, size)
        with self._cond:
            if self._stopping:  # the version was unloaded after this request picked it: answer it on its own
                batch = _Batch(started=time.monotonic(), tasks=[task], size=size, closed=True)
            else:
                batch = None
        if batch is not None:
            self._run_batch(batch)
            return self._result(task)
        with self._cond:
            batch = self._batches[-1] if self._batches and not self._batches[-1].closed else None
            if batch is None or batch.size + size > self.params.max_batch_size:
                if batch is not None:
                    batch.closed = True
                if len(self._batches) >= self.params.max_enqueued_batches:
                    raise Unavailable("The batch scheduling queue to which this task was submitted is full")
                batch = _Batch(started=time.monotonic())
                self._batches.append(batch)
            batch.tasks.append(task)
            batch.size += size
            batch.closed = batch.closed or batch.size >= self.params.max_batch_size
            self._cond.notify_all()
        task.done.wait()
        return self._result(task)

    @staticmethod
    def _result(task: _Task) -> dict:
        if task.error is not None:
            raise task.error
        return task.outputs

    def stop(self) -> None:
        """No new batches; the threads finish every request already queued, then end."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def _next_batch(self) -> _Batch | None:
        timeout = self.params.batch_timeout_micros / 1e6
        with self._cond:
            while True:
                if self._batches:
                    first = self._batches[0]
                    wait = first.started + timeout - time.monotonic()
                    if first.closed or wait <= 0 or self._stopping:
                        return self._batches.popleft()
                    self._cond.wait(wait)
                elif self._stopping:
                    return None
                else:
                    self._cond.wait()

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run_batch(batch)

    def _run_batch(self, batch: _Batch) -> None:
        try:
            merged, merged_size = merge_inputs([t.inputs for t in batch.tasks], self.params)
            parts = split_outputs(self.process(merged), [t.size for t in batch.tasks], merged_size)
            for task, outputs in zip(batch.tasks, parts):
                task.outputs = outputs
            self.stats["batches"] += 1
            self.stats["most_requests_merged"] = max(self.stats["most_requests_merged"], len(batch.tasks))
        except ServingError as err:
            for task in batch.tasks:
                task.error = err
        except Exception as err:  # noqa: BLE001 (whatever broke, every merged request is answered)
            wrapped = ServingError(f"{type(err).__name__}: {err}")
            for task in batch.tasks:
                task.error = wrapped
        finally:
            for task in batch.tasks:
                task.done.set()
