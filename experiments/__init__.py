"""Experiments that reproduce the paper's tables on real data with the pipeline's own code."""
