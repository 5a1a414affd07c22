"""Figures recorded before the speed work (issue #13), printed under each run's own table for comparison.

They are records, not results of the run that prints them: measured on this machine class (2 cores)
with the same command lines when the issue was filed, and labelled so in the output.
"""

# training_benchmark --max-len 50 --embed-dim 64 --experts 4 --steps 20 --batch-size 128 --domains 5 --items 100000
TRAINING_MAX_LEN = 50
TRAINING_SETTINGS = {"embed_dim": 64, "experts": 4, "batch_size": 128, "domains": 5, "items": 100_000}
TRAINING_BEFORE = [  # (code, ms/step, sequences/s)
    ("this project before the speed work", 1778, 72.0),
    ("the official PyTorch code's training step", 2924, 43.8),
]

# serving_benchmark --items 1000000: single requests, (p50 ms, p99 ms)
SERVING_ITEMS = 1_000_000
SERVING_BEFORE = [
    ("in-process serving_default (single request)", 42.3, 55.2),
    ("gRPC PredictionService (loopback, single request)", 43.7, 52.0),
]
