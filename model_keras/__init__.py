"""SyNCRec in Keras (tf.keras = tf-keras 2.21).

This is the one place that selects Keras 2 (`TF_USE_LEGACY_KERAS=1`): it must be set before
TensorFlow is first imported, because tensorflow-recommenders and TFX-style SavedModels need
tf-keras, not Keras 3. Import `model_keras` before `tensorflow` in any entry point.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
