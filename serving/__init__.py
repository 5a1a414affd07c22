"""Serving: a gRPC client for TF Serving's PredictionService, and a small local server that
speaks the same protocol over pushed SavedModels (for development and tests; production runs
tensorflow/serving on the same model directory)."""
