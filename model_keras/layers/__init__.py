"""Keras layers of SyNCRec, one per part of the paper (§4.1-4.2)."""
