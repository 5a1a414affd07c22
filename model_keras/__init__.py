"""SyNCRec in Keras (tf.keras = tf-keras 2.21).

This is the one place that selects Keras 2 (`TF_USE_LEGACY_KERAS=1`): it must be set before
TensorFlow is first imported, because tensorflow-recommenders and TFX-style SavedModels need
tf-keras, not Keras 3. Import `model_keras` before `tensorflow` in any entry point.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def require_tf_keras(tf_module) -> None:
    """Fail with the fix when tf.keras is not tf-keras (tf.keras was used before model_keras was imported:
    TensorFlow picks the Keras behind tf.keras on its first use)."""
    name = getattr(tf_module.keras, "__name__", "")
    if not name.startswith("tf_keras"):
        raise ImportError(
            f"tf.keras is {name or 'Keras 3'}, but syncrec needs tf-keras 2.21: tf.keras was used before "
            "model_keras set TF_USE_LEGACY_KERAS=1. Import model_keras first, or export TF_USE_LEGACY_KERAS=1."
        )
