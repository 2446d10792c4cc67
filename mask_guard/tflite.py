"""Load a TFLite model with whichever runtime is installed.

``ai_edge_litert`` first: it works with numpy 1 and 2 and has Python 3.13 aarch64 wheels;
``tflite_runtime`` (<= 2.14, numpy 1 only) is the fallback for older Pis.
"""
from __future__ import annotations

import os
from pathlib import Path


class ModelError(RuntimeError):
    """A model file is missing, unreadable or not a TFLite model. The message names the file."""


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter  # type: ignore

        return Interpreter
    except ImportError as exc:
        raise ModelError(
            "no TFLite runtime: install 'ai-edge-litert' (or 'tflite-runtime' on Python <= 3.11)"
        ) from exc


def runtime_name() -> str:
    cls = _interpreter_class()
    return cls.__module__.split(".")[0]


def load_interpreter(path: str | os.PathLike, num_threads: int | None = None, allocate: bool = True):
    """An Interpreter for ``path``; ``ModelError`` naming the file if it is missing or corrupt.

    ``allocate=False`` lets the caller resize inputs first (MTCNN's P-Net runs per pyramid scale).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    Interpreter = _interpreter_class()
    try:
        interp = Interpreter(model_path=str(path), num_threads=num_threads)
        if allocate:
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"model file {path} is not a valid TFLite model: {exc}") from exc
    return interp
