"""The backend seam: every place imgai must know which framework runs under Keras, or must reach
into Keras's private ``keras.src``, is here, each with the reason beside it.

Everything else in imgai speaks public Keras 3 only, so it runs on TensorFlow, JAX and (where
noted) PyTorch alike; a test holds every other module to that. Frameworks are imported inside the
functions, never at module level, so importing this module costs nothing (``imgai --help``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import numpy as np

from imgai.errors import ImgaiError


def name() -> str:
    """The Keras backend in use: "tensorflow", "jax", "torch" or "numpy"."""
    import keras

    return keras.backend.backend()


# --------------------------------------------------------------------------------- start-up


def start_runtime() -> None:
    """Start the backend's runtime now, inside :func:`imgai.quiet.import_keras`'s parked stderr.

    TensorFlow initialises its runtime lazily, on the first op, and logs a few lines then; running
    one op here keeps those lines hidden with the import's. The other backends log nothing.
    """
    if name() == "tensorflow":
        import tensorflow as tf

        tf.constant(0)


# --------------------------------------------------------------------------------- training


def make_deterministic() -> str | None:
    """Switch the backend's kernels to deterministic ones; returns a note for the user, if any.

    Keras has no public switch for this, so each framework's own is used.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    elif backend == "torch":
        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS' requirement for determinism
        torch.use_deterministic_algorithms(True)
    elif backend == "jax":
        # XLA on CPU is deterministic; its GPU flag is read once, when JAX starts, so it cannot be set here.
        return "Note: on a GPU, JAX needs XLA_FLAGS=--xla_gpu_deterministic_ops=true set before imgai starts."
    return None


def sync_before_mid_epoch_change(model) -> None:
    """Call before changing an optimizer setting (the learning rate) in the middle of an epoch.

    Keras on JAX trains on a copy of the variables and writes it back only at the epoch's end, so
    a rate set mid-epoch would be overwritten by the stale copy: write the copy back now. The other
    backends train on the variables themselves.
    """
    if name() == "jax":
        model.jax_state_sync()


def compile_pure(fn: Callable) -> Callable:
    """``fn`` (a pure function of tensors, no Python side effects per call) compiled for the backend.

    Keras compiles only models (``model.compile(jit_compile=...)``); imgai's augmentation step is a
    plain function outside the model, so it is compiled with the framework's own tracer:
    ``jax.jit`` on JAX, ``tf.function`` on TensorFlow. PyTorch and NumPy run it eagerly.
    """
    backend = name()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, reduce_retracing=True)
    return fn


def compiles_random_crop() -> bool:
    """Whether RandomCrop can run inside :func:`compile_pure`: it slices at a random offset, whose
    output shape ``jax.jit`` cannot trace; ``tf.function`` can."""
    return name() != "jax"


# --------------------------------------------------------------------------------- random state


def global_seed_generator(create: bool = False):
    """Keras's global SeedGenerator (behind ``keras.random`` calls without a seed), or None.

    Exact resume must save and restore its state, and Keras exposes it only in private modules:
    ``create`` makes it as Keras would on first use; without it, None when it does not exist yet
    or where a Keras version moved it.
    """
    try:
        if create:
            from keras.src.random.seed_generator import global_seed_generator as get

            return get()
        from keras.src.backend.common import global_state

        return global_state.get_global_attribute("global_seed_generator")
    except Exception:  # pragma: no cover - depends on Keras internals
        if create:
            raise
        return None


# --------------------------------------------------------------------------------- downloads


@contextlib.contextmanager
def recording_downloads(asked: dict):
    """Record in ``asked`` (fname, origin, cache_subdir) what ``keras.applications`` tried to
    download inside the block, so a failure can name the file and where to put it.

    The applications call the private ``keras.src.utils.file_utils.get_file``, so only patching
    that module sees the request.
    """
    from keras.src.utils import file_utils

    real_get_file = file_utils.get_file

    def recording_get_file(fname=None, origin=None, *args, **kwargs):
        asked.update(fname=fname, origin=origin, cache_subdir=kwargs.get("cache_subdir", "datasets"))
        return real_get_file(fname, origin, *args, **kwargs)

    file_utils.get_file = recording_get_file
    try:
        yield
    finally:
        file_utils.get_file = real_get_file


def keras_cache_dir() -> str:
    """Where ``keras.utils.get_file`` keeps downloads: ``KERAS_HOME`` (private
    ``keras.src.backend.config.keras_home``), or /tmp/.keras where that is not writable, as
    get_file itself falls back."""
    from keras.src.backend.config import keras_home

    home = os.path.expanduser(keras_home())
    return home if os.access(home, os.W_OK) else os.path.join("/tmp", ".keras")


# --------------------------------------------------------------------------------- gradients


def activation_gradients(forward: Callable, images: np.ndarray):
    """(activation, d score / d activation, probabilities) as numpy arrays, for Grad-CAM.

    ``forward(x, hook)`` runs the model on ``x`` with ``hook`` applied to the activation Grad-CAM
    reads, and returns ``(score, activation, probabilities)``. Keras has no public gradient API, so
    each framework's own is used:

    * TensorFlow: ``tf.GradientTape`` watching the activation. The gradient is None when the
      score does not depend on it.
    * JAX: ``jax.value_and_grad`` with respect to a zero tensor added to the activation (the
      gradient at zero of ``score(activation + delta)`` is the gradient at the activation), as JAX
      differentiates functions of inputs, not intermediate values. The model's variables enter as
      constants; nothing is trained, so no stateless call is needed.
    * PyTorch is not wired in yet: one line says so.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(images, dtype=tf.float32)
        with tf.GradientTape() as tape:
            score, activation, probabilities = forward(x, lambda a: (tape.watch(a), a)[1])
        gradients = tape.gradient(score, activation)
        if gradients is None:
            return activation.numpy(), None, probabilities.numpy()
        return activation.numpy(), gradients.numpy(), probabilities.numpy()
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        x = jnp.asarray(images, dtype=jnp.float32)
        shape = jax.eval_shape(lambda x: forward(x, lambda a: a)[1], x)

        def score_of(delta):
            score, activation, probabilities = forward(x, lambda a: a + delta)
            return score, (activation, probabilities)

        (_, (activation, probabilities)), gradients = jax.value_and_grad(score_of, has_aux=True)(
            jnp.zeros(shape.shape, shape.dtype)
        )
        return np.asarray(activation), np.asarray(gradients), np.asarray(probabilities)
    raise ImgaiError(
        f"imgai explain runs on the TensorFlow and JAX backends (KERAS_BACKEND is '{backend}'): "
        "run it with KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
    )
