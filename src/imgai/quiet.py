"""Keep framework log noise (TensorFlow's C++ logs, CUDA probes, retracing warnings) off the screen.

Must run before TensorFlow or Keras is imported: the C++ log level is read from the environment
once, at import. Recent TensorFlow builds log a few lines through absl before that setting is
read, so :func:`import_keras` also parks file descriptor 2 while Keras (and its backend) load,
and replays what was written there if the import fails. ``imgai --verbose`` (or
``IMGAI_VERBOSE=1``) leaves everything visible.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings


def _verbose() -> bool:
    return os.environ.get("IMGAI_VERBOSE") == "1"


def silence_frameworks(verbose: bool = False) -> None:
    if verbose:
        os.environ["IMGAI_VERBOSE"] = "1"
    if _verbose():
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO/WARNING/ERROR, CUDA probes
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    for name in ("tensorflow", "absl", "jax._src.xla_bridge", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=r".*retracing.*")


@contextlib.contextmanager
def _stderr_parked():
    """Send fd 2 to a temporary file; give back its text if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded interpreters): nothing to park
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


# The pip extra that installs each Keras backend: pip install 'imgai[jax]'.
BACKEND_EXTRAS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


def missing_backend(exc: ImportError):
    """The one-line ImgaiError for a Keras backend that is not installed, else None."""
    from imgai.errors import ImgaiError

    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in BACKEND_EXTRAS:
        return None
    return ImgaiError(
        f"the Keras backend '{name}' is not installed: pip install 'imgai[{BACKEND_EXTRAS[name]}]', "
        f"or set KERAS_BACKEND to an installed one ({', '.join(BACKEND_EXTRAS)})"
    )


def stderr_parked():
    """Hide what native code writes to fd 2 in a block (kept and shown if the block raises),
    unless imgai runs verbose."""
    return contextlib.nullcontext() if _verbose() else _stderr_parked()


def import_keras():
    """Import Keras (and its backend framework) without the frameworks' start-up chatter; a backend
    that is not installed is one line naming the extra that installs it."""
    try:
        return _import_keras()
    except ModuleNotFoundError as exc:
        error = missing_backend(exc)
        if error is None:
            raise
        raise error from None


def _import_keras():
    if "keras" in sys.modules or _verbose():
        import keras

        return keras
    with _stderr_parked():
        import keras

        from imgai.backend import start_runtime

        start_runtime()  # a lazily started runtime's lines are parked too
    return keras
