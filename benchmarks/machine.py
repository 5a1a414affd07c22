"""The machine a benchmark ran on, for its header: figures from two machines of one class differ 2-3x
(AVX-512, which TensorFlow's kernels use, or AVX2 only), so a figure without its machine cannot be compared."""

from __future__ import annotations

import os
import platform


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_line() -> str:
    """'machine: CPU, N cores, AVX-512 yes|no (AVX2 yes|no), TensorFlow X, Python Y'."""
    import tensorflow as tf

    flags = cpu_flags()
    avx512 = "yes" if "avx512f" in flags else "no"
    avx2 = "yes" if "avx2" in flags else "no"
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, AVX-512 {avx512} (AVX2 {avx2}), "
        f"TensorFlow {tf.__version__}, Python {platform.python_version()}"
    )
