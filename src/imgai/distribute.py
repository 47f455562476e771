"""Data-parallel training on several devices and processes, on Keras 3's own engines.

This module is the distribution seam: it is the one place outside the backend seam that branches
on the Keras backend, because each backend ships a different engine and only some of them work:

* JAX: ``keras.distribution.DataParallel`` made current with ``set_distribution`` (one process
  or several; several are joined through JAX's coordination service, as
  ``keras.distribution.initialize`` does, but with timeouts so that a missing process ends the
  run instead of hanging it);
* TensorFlow: ``tf.distribute.MirroredStrategy`` over the devices of one machine, the model built
  and compiled in its scope. ``MultiWorkerMirroredStrategy`` with ``model.fit`` is broken under
  Keras 3 (keras-team/keras#20585, tensorflow/tensorflow#72388), so several processes on this
  backend are refused with one line that points to JAX;
* PyTorch: Keras 3.15 ships no distribution engine for torch, so asking for one is refused.

``data.batch_size`` is the global batch: every process derives the same split and epoch order
from the seed and reads only its own slice of each global batch (see :class:`Plan.shard`); only
process 0 writes. The model and its checkpoints are ordinary Keras objects: a model trained on N
devices loads and predicts on one.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from imgai.errors import ImgaiError

ENV_ADDRESS = "KERAS_DISTRIBUTION_JOB_ADDRESSES"
ENV_PROCESSES = "KERAS_DISTRIBUTION_NUM_PROCESSES"
ENV_PROCESS_ID = "KERAS_DISTRIBUTION_PROCESS_ID"
TF_MULTI_WORKER_ISSUE = "keras-team/keras#20585"


@dataclass(frozen=True)
class Cluster:
    """Which process of how many this is, and where process 0 listens (``HOST:PORT``)."""

    num_processes: int = 1
    process_id: int = 0
    coordinator: str | None = None


def cluster_from(
    num_processes: int | None = None, process_id: int | None = None, coordinator: str | None = None
) -> Cluster:
    """The cluster from explicit values, else from Keras's ``KERAS_DISTRIBUTION_*`` variables, else
    one process. Light: imports nothing heavy, so the CLI checks it before loading Keras."""

    def from_env(name: str) -> int | None:
        raw = os.environ.get(name)
        if raw is None or raw.strip() == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ImgaiError(f"environment variable {name}={raw!r} must be a whole number") from None

    if num_processes is None:
        num_processes = from_env(ENV_PROCESSES)
    if process_id is None:
        process_id = from_env(ENV_PROCESS_ID)
    if coordinator is None:
        # Keras takes every job's address; JAX needs only the first, the coordinator's.
        coordinator = (os.environ.get(ENV_ADDRESS) or "").split(",")[0].strip() or None
    cluster = Cluster(num_processes or 1, process_id or 0, coordinator)
    check_cluster(cluster)
    return cluster


def check_cluster(cluster: Cluster) -> None:
    n, i = cluster.num_processes, cluster.process_id
    if n < 1:
        raise ImgaiError(f"num_processes={n}: needs at least 1")
    if not 0 <= i < n:
        raise ImgaiError(f"process_id={i} is out of range for num_processes={n}: use 0 to {n - 1}")
    if n > 1:
        if not cluster.coordinator:
            raise ImgaiError(
                f"num_processes={n} needs the coordinator's address: pass coordinator=HOST:PORT "
                f"(process 0's host and a free port), or set {ENV_ADDRESS}"
            )
        if not re.fullmatch(r"\[?[\w.:-]+\]?:\d{1,5}", cluster.coordinator):
            raise ImgaiError(
                f"coordinator '{cluster.coordinator}' is not HOST:PORT (for example 10.0.0.1:1234)"
            )


# ---------------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """How this process trains: which engine, on which devices, as which process."""

    engine: str = "none"  # none | jax | tensorflow
    devices: list[str] = field(default_factory=list)  # every device of the run, all processes
    num_processes: int = 1
    process_id: int = 0
    timeout: float = 300.0
    _distribution: Any = field(default=None, repr=False)  # keras DataParallel or tf strategy

    @property
    def replicas(self) -> int:
        return max(1, len(self.devices)) if self.engine != "none" else 1

    @property
    def is_writer(self) -> bool:
        """Only process 0 writes the run folder, checkpoints, history and logs."""
        return self.process_id == 0

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1

    @property
    def batch_multiple(self) -> int:
        """Rows every batch must be a multiple of. JAX places each batch on the mesh as one array,
        split evenly over the devices; MirroredStrategy splits uneven batches itself."""
        return self.replicas if self.engine == "jax" else 1

    def shard(self) -> tuple[int, int]:
        """(this process, processes): the slice of each global batch this process reads."""
        return self.process_id, self.num_processes

    def allgather(self, array):
        """``array`` (a numpy array of the same shape in every process) from every process,
        stacked as ``(num_processes, *shape)`` in process order: a collective, so every process of
        the run must call it, in the same order."""
        import numpy as np
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(array, tiled=False))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile, train and save inside this scope."""
        if self.engine == "tensorflow":
            with self._distribution.scope():
                yield
        elif self.engine == "jax":
            import keras

            previous = keras.distribution.distribution()
            keras.distribution.set_distribution(self._distribution)
            try:
                yield
            finally:
                keras.distribution.set_distribution(previous)
        else:
            yield

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Around process 0's saves. Keras builds throwaway variables while saving (a reference
        optimizer, keras.src.saving.saving_lib.get_attr_skipset); under a multi-process
        distribution each would be a collective that the other processes never join."""
        if self.engine != "jax":
            yield
            return
        import keras

        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)

    def describe(self) -> str:
        if self.engine == "none":
            return "one device"
        kind = {"jax": "keras.distribution.DataParallel", "tensorflow": "tf.distribute.MirroredStrategy"}
        where = f"{len(self.devices)} devices ({', '.join(self.devices)})"
        if self.multi_process:
            where += f" over {self.num_processes} processes, this is process {self.process_id}"
        return f"data parallel on {where} with {kind[self.engine]}"


def nearest_batch_sizes(batch_size: int, multiple: int) -> list[int]:
    below = batch_size // multiple * multiple
    return [s for s in (below, below + multiple) if s > 0]


def check_batch_size(batch_size: int, multiple: int, what: str) -> None:
    if batch_size % multiple:
        sizes = " or ".join(str(s) for s in nearest_batch_sizes(batch_size, multiple))
        raise ImgaiError(
            f"data.batch_size={batch_size} is the global batch and must divide evenly over {what}: "
            f"use {sizes}"
        )


def _pick(local: list, wanted, what: str) -> list:
    """``train.devices`` (all | N | [indices]) applied to this process's device list."""
    count = len(local)
    if wanted == "all":
        return list(local)
    if isinstance(wanted, int):
        if wanted > count:
            raise ImgaiError(
                f"train.devices={wanted} but this machine has {count} {what} device(s): "
                f"use train.devices=all or a number up to {count}"
            )
        return list(local[:wanted])
    bad = [i for i in wanted if not 0 <= i < count]
    if bad:
        raise ImgaiError(
            f"train.devices={list(wanted)} names device(s) {bad} but this machine has {count} {what} "
            f"device(s), numbered 0 to {count - 1}"
        )
    return [local[i] for i in wanted]


def plan(config, cluster: Cluster | None = None, log: Callable[[str], None] = print) -> Plan:
    """Decide how to train ``config`` and set the engine up; raises before anything is written.

    Must run before the backend computes anything: joining several processes is only possible
    while JAX has not started its devices.
    """
    import keras

    cluster = cluster or Cluster()
    check_cluster(cluster)
    train_cfg = config.train
    mode, wanted = train_cfg.distribution, train_cfg.devices
    backend = keras.backend.backend()
    timeout = float(train_cfg.distributed_timeout)
    if cluster.num_processes > 1 and mode == "none":
        raise ImgaiError(
            f"num_processes={cluster.num_processes} needs train.distribution=auto or data_parallel "
            "(it is none)"
        )
    if backend == "tensorflow":
        if cluster.num_processes > 1:
            raise ImgaiError(
                "several processes are not supported on the TensorFlow backend (MultiWorkerMirroredStrategy "
                f"with model.fit is broken under Keras 3, {TF_MULTI_WORKER_ISSUE}): set KERAS_BACKEND=jax"
            )
        return _plan_tensorflow(mode, wanted, config.data.batch_size, timeout, log)
    if backend == "jax":
        return _plan_jax(mode, wanted, cluster, config.data.batch_size, timeout, log)
    if mode == "data_parallel" or cluster.num_processes > 1:
        raise ImgaiError(
            f"train.distribution=data_parallel is not available on the {backend} backend (Keras "
            f"{keras.__version__} has no distribution engine for it): set KERAS_BACKEND=jax, or "
            "train.distribution=none"
        )
    return Plan(timeout=timeout)


def _plan_tensorflow(mode: str, wanted, batch_size: int, timeout: float, log) -> Plan:
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if mode == "none" or (mode == "auto" and len(gpus) < 2):
        return Plan(timeout=timeout)
    # Logical CPU devices (tf.config.set_logical_device_configuration) stand in for GPUs in tests.
    local, what = (gpus, "GPU") if gpus else ([d.name for d in tf.config.list_logical_devices("CPU")], "CPU")
    devices = _pick(local, wanted, what)
    check_batch_size(batch_size, len(devices), f"{len(devices)} devices")
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Plan("tensorflow", devices, timeout=timeout, _distribution=strategy)


def _plan_jax(mode: str, wanted, cluster: Cluster, batch_size: int, timeout: float, log) -> Plan:
    import jax
    import keras

    if cluster.num_processes > 1:
        join(cluster, timeout)
    local = jax.local_devices()
    accelerators = [d for d in local if d.platform != "cpu"]
    if mode == "none" or (mode == "auto" and len(accelerators) < 2 and cluster.num_processes == 1):
        return Plan(timeout=timeout)
    what = local[0].platform.upper()
    picked = _pick(local, wanted, what)
    positions = [local.index(d) for d in picked]
    # Every process picks the same positions among its own devices (they read the same config).
    by_process: dict[int, list] = {}
    for device in jax.devices():
        by_process.setdefault(device.process_index, []).append(device)
    devices = [
        f"{d.platform}:{d.id}" for p in sorted(by_process) for d in (by_process[p][i] for i in positions)
    ]
    what = f"{len(devices)} devices" + (
        f" ({cluster.num_processes} processes x {len(picked)})" if cluster.num_processes > 1 else ""
    )
    check_batch_size(batch_size, len(devices), what)
    # imgai shards its own batches by process (Plan.shard): Keras's auto-sharding takes tf.data only.
    distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
    return Plan(
        "jax", devices, cluster.num_processes, cluster.process_id, timeout=timeout, _distribution=distribution
    )


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _check_coordinator(cluster: Cluster, timeout: float) -> None:
    """Fail in plain words before JAX tries: JAX ends the process (abort, no Python exception)
    when it cannot register with the coordinator."""
    import socket

    host, port = _host_port(cluster.coordinator)
    if cluster.process_id == 0:  # process 0 hosts the coordination service on this port
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("", port))
            except OSError as exc:
                raise ImgaiError(
                    f"coordinator port {port} cannot be opened on this machine ({exc.strerror}): "
                    "choose a free port for --coordinator"
                ) from None
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout)):
                return
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise ImgaiError(
                    f"process {cluster.process_id} of {cluster.num_processes} could not reach the coordinator "
                    f"{cluster.coordinator} within train.distributed_timeout={timeout:g} s ({exc.strerror or exc}): "
                    "start process 0 with the same --coordinator, and check the host and port"
                ) from None
            time.sleep(0.5)


def _give_up(message: str, exit_code: int) -> None:
    print(f"Error: {message}", file=sys.stderr, flush=True)
    os._exit(exit_code)  # the main thread waits inside JAX's runtime: nothing else can end it


def join(cluster: Cluster, timeout: float) -> None:
    """Join the other processes through JAX's coordination service (process 0 hosts it).

    What ``keras.distribution.initialize`` does, with bounded waits: the coordinator must be
    reachable and every process registered within ``timeout`` seconds, else the process ends with
    one line (exit code 2) before anything is written. JAX's own deadlines are set later than
    imgai's, because JAX ends the process with a C++ stack trace instead of a message.
    """
    import jax

    started = time.monotonic()
    _check_coordinator(cluster, timeout)
    # Collectives between CPU processes need an implementation; gloo ships with jaxlib.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    timer = threading.Timer(
        max(1.0, timeout - (time.monotonic() - started)),
        _give_up,
        (
            f"process {cluster.process_id} of {cluster.num_processes}: not every process joined the run at "
            f"{cluster.coordinator} within train.distributed_timeout={timeout:g} s: start all "
            f"{cluster.num_processes} processes with the same --num-processes and --coordinator",
            2,
        ),
    )
    timer.daemon = True
    timer.start()
    try:
        jax.distributed.initialize(
            coordinator_address=cluster.coordinator,
            num_processes=cluster.num_processes,
            process_id=cluster.process_id,
            initialization_timeout=int(timeout) + 60,
            heartbeat_timeout_seconds=2 * int(timeout) + 30,
            shutdown_timeout_seconds=int(timeout) + 30,
        )
    except Exception as exc:  # mismatched settings that JAX reports as an exception
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ImgaiError(
            f"process {cluster.process_id} of {cluster.num_processes} could not join the run at "
            f"{cluster.coordinator} ({first[:200]}): start every process with the same --coordinator "
            "and --num-processes"
        ) from None
    finally:
        timer.cancel()


# ------------------------------------------------------------------------------- the watchdog


class Watchdog:
    """Ends a multi-process run that stops making progress, instead of letting it hang.

    When a process dies, the others wait inside a collective of the next step, where Python cannot
    interrupt them; this thread notices that no batch finished for ``timeout`` seconds, prints one
    line and ends the process (exit code 1). It watches from the first finished batch on: before
    that, processes wait for the slowest one to start and compile, and a process that dies then
    is caught by JAX's own heartbeat deadline (set in :func:`join`).
    """

    def __init__(self, plan: Plan, log: Callable[[str], None] = print):
        self.plan = plan
        self.log = log
        self.last = time.monotonic()
        self.started = False  # a first batch finished
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="imgai-watchdog", daemon=True)

    def beat(self, progress: bool = True) -> None:
        self.last = time.monotonic()
        self.started = self.started or progress

    def _watch(self) -> None:
        while not self._stop.wait(min(1.0, self.plan.timeout / 4)):
            idle = time.monotonic() - self.last
            if self.started and idle > self.plan.timeout:
                _give_up(
                    f"process {self.plan.process_id} of {self.plan.num_processes} made no progress for "
                    f"{idle:.0f} s (train.distributed_timeout={self.plan.timeout:g}): another process of the run "
                    "stopped or cannot be reached. The run ends here; its last completed epoch is kept, continue "
                    "it with imgai train --resume",
                    1,
                )

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        """Watch the block; a collective that fails (gloo reports a peer that went away as a
        ValueError) ends the process at once, with one line: a normal exit would wait in JAX's
        shutdown barrier for the process that is gone."""
        self.beat(progress=False)
        self._thread.start()
        try:
            yield
        except (ImgaiError, KeyboardInterrupt):
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            _give_up(
                f"process {self.plan.process_id} of {self.plan.num_processes}: training failed "
                f"({type(exc).__name__}: {first}): another process of the run stopped or cannot be reached. "
                "The run ends here; its last completed epoch is kept, continue it with imgai train --resume",
                1,
            )
        finally:
            self._stop.set()

    def callback(self):
        import keras

        watchdog = self

        class Heartbeat(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                watchdog.beat()

            def on_test_batch_end(self, batch, logs=None):
                watchdog.beat()

            def on_epoch_end(self, epoch, logs=None):
                watchdog.beat()

        return Heartbeat()


def padding_correction(rows: int, batch_size: int, multiple: int):
    """A callback that undoes what the weight-0 padding of validation does to ``val_loss``.

    The loss is averaged over every row of a batch, padding included (Keras's
    ``sum_over_batch_size``), and the padding adds 0 to the sum; so the epoch's mean is
    ``rows / (rows + padding)`` of the true one. Run it first: the other callbacks read the
    corrected value. None when there is no padding.
    """
    import keras

    padding = -(rows % batch_size) % multiple
    if not padding:
        return None
    factor = (rows + padding) / rows

    class PaddingCorrection(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and "val_loss" in logs:
                logs["val_loss"] = float(logs["val_loss"]) * factor

    return PaddingCorrection()


def single_device_note(model_path, command: str) -> str | None:
    """The line ``imgai eval`` / ``predict`` print when distribution is configured: they run on
    one device (inference on a few thousand images gains little from more, and the model file is
    the same). Configured = the model's run asked for data_parallel, or KERAS_DISTRIBUTION_*
    names several processes."""
    from pathlib import Path

    import yaml

    asked = []
    saved = Path(model_path).parent / "config.yaml"
    try:
        train = (yaml.safe_load(saved.read_text(encoding="utf-8")) or {}).get("train") or {}
        if train.get("distribution") == "data_parallel":
            asked.append("train.distribution=data_parallel in the run's config")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    if (os.environ.get(ENV_PROCESSES) or "1").strip() not in ("", "0", "1"):
        asked.append(f"{ENV_PROCESSES}={os.environ[ENV_PROCESSES]}")
    if not asked:
        return None
    return (
        f"Note: imgai {command} runs on one device and in this process only "
        f"({', '.join(asked)} applies to training)."
    )
