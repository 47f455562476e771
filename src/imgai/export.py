"""Export: a trained ``.keras`` model -> deployable artifacts, each re-scored before it ships.

:func:`export_model` writes every asked format through Keras's own ``model.export`` (SavedModel,
ONNX, LiteRT, OpenVINO) or as an inference-only ``.keras``, then loads each artifact with its own
runtime (:mod:`imgai.artifacts`), scores it on the run's test split (else validation, or
``data_dir``) and compares it with the ``.keras`` on the very same decoded images: top-1
agreement, |Δ probability|, accuracy and macro-F1 of both, per-class recall change, file size,
batch-1 latency and batch-32 throughput. The guardrail is imgai's quality gate
(:mod:`imgai.gate`); an artifact that fails it is renamed ``<name>.rejected`` so it cannot ship
by accident, its row stays in ``export.json``.

Quantization applies to LiteRT: ``float16`` and ``dynamic`` (int8 weights) are the converter's
options, ``int8`` is full-integer post-training quantization calibrated on a seeded sample of the
run's own training images, decoded by :func:`imgai.data.load_images` exactly as training decodes
them (weights scaled per output channel); ``int8-per-tensor`` is the same with one scale per
weight tensor. ``auto`` tries int8-per-tensor, int8, dynamic, float16, none (smallest first) and
keeps the first that passes.

The resize and rescale layers are inside every artifact: each takes raw 0..255 pixels.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from imgai.artifacts import ONNX_METADATA_KEY, SIDECAR, artifact_size, load_artifact
from imgai.errors import ImgaiError

FORMATS = ("keras", "savedmodel", "onnx", "litert", "openvino")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8", "int8-per-tensor", "auto")
INT8 = ("int8", "int8-per-tensor")  # full-integer: calibrated on training images
AUTO_ORDER = ("int8-per-tensor", "int8", "dynamic", "float16", "none")  # smallest file first
INT8_IO = ("float32", "uint8", "int8")
EXPORT_FILE = "export.json"
MODEL_CARD = "model_card.md"
REJECTED = ".rejected"
DEFAULT_MIN_AGREEMENT = 0.995  # float artifacts: the same answer as the .keras on 199 of 200 images
DEFAULT_MAX_DROP = {"accuracy": 0.01}  # quantized artifacts: at most 1 accuracy point lost
DEFAULT_CALIBRATION_IMAGES = 200

# What each format needs installed to be written (module, pip command).
_NEEDS = {
    "savedmodel": [("tensorflow", "pip install tensorflow")],
    "onnx": [
        ("tensorflow", "pip install tensorflow"),
        ("tf2onnx", "pip install 'imgai[export]'"),
        ("onnx", "pip install 'imgai[export]'"),
        ("onnxruntime", "pip install 'imgai[export]'"),
    ],
    "litert": [("tensorflow", "pip install tensorflow")],
    "openvino": [("openvino", "pip install 'imgai[openvino]'")],
}
_NEXT_TRY = {
    "int8-per-tensor": "try --quantize int8 (a scale per output channel keeps more precision)",
    "int8": "try --quantize dynamic (int8 weights, float activations) or float16",
    "dynamic": "try --quantize float16",
    "float16": "try --quantize none",
    "none": "the converter changed the model's answers: ship the .keras or another format, "
    "and run with --verbose to see the converter's warnings",
}


def parse_formats(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"onnx,litert"`` -> ``["onnx", "litert"]``; an unknown name is an ImgaiError."""
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item not in FORMATS:
            raise ImgaiError(f"unknown export format '{item}': choose from {', '.join(FORMATS)}")
        if item not in names:
            names.append(item)
    if not names:
        raise ImgaiError(f"no export format given: pass --format with one or more of {', '.join(FORMATS)}")
    return names


@dataclass
class Guardrail:
    """The checks an artifact must pass, in ``imgai eval``'s gate language. Unset fields take the
    defaults: agreement >= 99.5 % for float artifacts, accuracy drop <= 0.01 for quantized ones."""

    min_agreement: float | None = None
    max_drop: dict[str, float] = field(default_factory=dict)
    min_class_recall: float | None = None

    def validate(self) -> Guardrail:
        from imgai.names import check_metric_name

        if self.min_agreement is not None and not 0.0 <= self.min_agreement <= 1.0:
            raise ImgaiError(f"min_agreement {self.min_agreement} is not between 0 and 1 (e.g. 0.995)")
        for name, drop in self.max_drop.items():
            check_metric_name(name)
            if drop < 0:
                raise ImgaiError(f"max drop for '{name}' is {drop}: it must be 0 or more")
        if self.min_class_recall is not None and not 0.0 <= self.min_class_recall <= 1.0:
            raise ImgaiError(f"min_class_recall {self.min_class_recall} is not between 0 and 1")
        return self

    def is_default(self) -> bool:
        return self.min_agreement is None and not self.max_drop and self.min_class_recall is None

    def spec(self, quantized: bool, reference_metrics: dict):
        """The gate's spec (an :class:`~imgai.config.EvalConfig`) for one artifact.

        Built with ``model_construct``: ``agreement`` is this check's own metric, not one of the
        eval metrics the schema validates (the user's max_drop names were checked in validate())."""
        from imgai.config import EvalConfig

        if self.is_default():
            agreement = None if quantized else DEFAULT_MIN_AGREEMENT
            drops = dict(DEFAULT_MAX_DROP) if quantized else {}
            recall = None
        else:
            agreement, drops, recall = self.min_agreement, dict(self.max_drop), self.min_class_recall
        return EvalConfig.model_construct(
            top_k=None,
            fail_under={"agreement": agreement} if agreement is not None else {},
            fail_over={},
            min_class_recall=recall,
            max_drop=drops,
            baseline="the .keras model" if drops else None,
        )


def check_artifact(guard: Guardrail, quantized: bool, metrics: dict, reference_metrics: dict) -> list:
    """Run the guardrail on an artifact's ``metrics`` (which hold ``agreement``); returns the gate's
    :class:`~imgai.gate.CheckResult` list."""
    from imgai.gate import run_checks

    results = run_checks(guard.spec(quantized, reference_metrics), metrics, reference_metrics)
    for result in results:
        if result.metric == "agreement":
            result.detail = "top-1 agreement with the .keras"
        elif result.check == "max_drop":
            result.detail = result.detail.replace("baseline", ".keras")
    return results


def compare(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict:
    """Parity of ``candidate`` probabilities with ``reference`` (the .keras) on the same images:
    the candidate's metrics (imgai.evaluate's) plus agreement, |Δp| and per-class recall change."""
    from imgai.evaluate import compute_metrics

    metrics = compute_metrics(candidate, labels, class_names)
    ref = compute_metrics(reference, labels, class_names)
    delta = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    n = len(labels)
    metrics["agreement"] = float(np.mean(candidate.argmax(1) == reference.argmax(1))) if n else float("nan")
    metrics["mean_abs_dp"] = float(delta.mean()) if n else float("nan")
    metrics["max_abs_dp"] = float(delta.max()) if n else float("nan")
    metrics["recall_change"] = {
        name: (
            None
            if metrics["per_class"][name]["recall"] is None
            else round(metrics["per_class"][name]["recall"] - ref["per_class"][name]["recall"], 6)
        )
        for name in class_names
    }
    return metrics


def measure_speed(
    predict: Callable[[np.ndarray], Any], images: np.ndarray, seconds: float = 1.5
) -> dict[str, float]:
    """CPU latency at batch 1 (p50, p95 in ms) and throughput at batch 32 (images/s)."""
    one = images[:1].astype(np.float32)
    batch = np.resize(images, (32, *images.shape[1:])).astype(np.float32)
    for _ in range(3):  # warm-up: first calls allocate and (for Keras) trace
        predict(one)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < 20 or (time.perf_counter() < deadline and len(times) < 200):
        start = time.perf_counter()
        predict(one)
        times.append(time.perf_counter() - start)
    predict(batch)
    runs, elapsed = 0, 0.0
    while runs < 3 or (elapsed < seconds and runs < 50):
        start = time.perf_counter()
        predict(batch)
        elapsed += time.perf_counter() - start
        runs += 1
    return {
        "latency_ms_p50": round(float(np.percentile(times, 50)) * 1000, 3),
        "latency_ms_p95": round(float(np.percentile(times, 95)) * 1000, 3),
        "throughput_ips": round(32 * runs / elapsed, 1),
    }


# ------------------------------------------------------------------------------------ writing


def _check_installed(formats: list[str]) -> None:
    import keras

    for fmt in formats:
        for module, install in _NEEDS.get(fmt, []):
            if importlib.util.find_spec(module) is None:
                if module == "tensorflow":
                    raise ImgaiError(
                        f"exporting to {fmt} needs TensorFlow for its converter, on every Keras backend "
                        f"(this one: {keras.backend.backend()}): {install}"
                    )
                raise ImgaiError(f"exporting to {fmt} needs {module}, which is not installed: {install}")


def artifact_name(fmt: str, quantization: str) -> str:
    suffix = "" if quantization == "none" else f".{quantization}"
    return {
        "keras": "model.keras",
        "savedmodel": "saved_model",
        "onnx": "model.onnx",
        "litert": f"model{suffix}.tflite",
        "openvino": "model.xml",
    }[fmt]


def litert_options(quantization: str, calibration: np.ndarray | None, int8_io: str = "float32") -> dict:
    """The TFLite converter settings for a quantization, passed through ``model.export``."""
    if quantization == "none":
        return {}
    import tensorflow as tf

    options: dict[str, Any] = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if quantization == "float16":
        options["target_spec"] = {"supported_types": [tf.float16]}
    elif quantization in INT8:
        images = calibration if calibration is not None else np.zeros((0,))

        def representative_dataset():
            for i in range(len(images)):
                yield [images[i : i + 1].astype(np.float32)]

        options["representative_dataset"] = representative_dataset
        options["target_spec"] = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]}
        if quantization == "int8-per-tensor":
            # Per-channel weights carry a float32 scale and an int64 zero point per output channel:
            # on a small, wide model that is a sixth of the int8 file. One scale per tensor drops
            # them (and suits accelerators that only take per-tensor weights), at some precision.
            # The converter's own switch; Keras sets any converter attribute it is given.
            options["_experimental_disable_per_channel"] = True
        if int8_io != "float32":
            dtype = tf.uint8 if int8_io == "uint8" else tf.int8
            options["inference_input_type"] = dtype
            options["inference_output_type"] = dtype
    return options


def _embed_metadata(path: Path, fmt: str, metadata: dict) -> None:
    """Class names, image size and colour mode inside the artifact, where the format has room."""
    text = json.dumps(metadata, indent=2)
    if fmt == "savedmodel":
        (path / "assets").mkdir(exist_ok=True)
        (path / "assets" / SIDECAR).write_text(text, encoding="utf-8")
    elif fmt == "onnx":
        import onnx

        model = onnx.load(str(path))
        del model.metadata_props[:]
        for key, value in (
            (ONNX_METADATA_KEY, text),
            ("class_names", json.dumps(metadata["class_names"])),
            ("image_size", json.dumps(metadata["image_size"])),
            ("color_mode", metadata["color_mode"]),
        ):
            model.metadata_props.add(key=key, value=value)
        model.doc_string = "imgai image classifier: raw 0..255 pixels in, class probabilities out"
        onnx.save(model, str(path))
    elif fmt == "litert":
        # An associated file, packed as TFLite Support packs them: a zip appended to the flatbuffer,
        # which interpreters ignore and zip readers (and imgai) find.
        import zipfile

        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr(SIDECAR, text)
    elif fmt == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(path))
        for key in ("class_names", "image_size", "color_mode", "interpolation"):
            model.set_rt_info(json.dumps(metadata[key]), ["imgai", key])
        tmp = path.with_name(".meta." + path.name)
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        os.replace(tmp, path)
        os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))


def write_artifact(
    model,
    fmt: str,
    quantization: str,
    folder: Path,
    metadata: dict,
    calibration: np.ndarray | None = None,
    int8_io: str = "float32",
) -> Path:
    """Write one artifact into ``folder`` through Keras's exporters; returns its path."""
    from imgai.quiet import import_keras

    import_keras()
    path = folder / artifact_name(fmt, quantization)
    if fmt == "keras":
        from imgai.modelfile import save_model

        save_model(model, path, metadata)  # compiled without optimizer, no resume state
        return path
    keras_format = {
        "savedmodel": "tf_saved_model",
        "onnx": "onnx",
        "litert": "litert",
        "openvino": "openvino",
    }
    options = litert_options(quantization, calibration, int8_io) if fmt == "litert" else {}
    model = inference_graph(model)
    import warnings

    from imgai.quiet import stderr_parked

    with warnings.catch_warnings(), stderr_parked():  # converter logs; shown if it fails
        warnings.simplefilter("ignore")
        try:
            model.export(str(path), format=keras_format[fmt], verbose=False, **options)
        except ImgaiError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
            hint = f"; {_NEXT_TRY[quantization]}" if quantization != "none" else ""
            raise ImgaiError(f"Keras could not export this model to {fmt} ({first}){hint}") from None
    _embed_metadata(path, fmt, metadata)
    return path


def inference_graph(model):
    """``model`` called with ``training=False``, as the graph the exporters trace.

    The exporters trace ``model(x)`` with ``training`` unset, and a saved functional graph can
    carry ``training=True`` on its resize node (Keras records it there); that value then reached
    every later layer, so BatchNormalization normalised each batch by its own statistics in the
    exported file (an ONNX file of a ``sepresnet`` model agreed with the .keras on 90 % of the
    flowers photos). Wrapping the model fixes the mode; the input keeps its name."""
    import keras

    name = model.inputs[0].name.split(":")[0] if model.inputs else "image"
    inputs = keras.Input(shape=model.input_shape[1:], name=name, dtype=model.inputs[0].dtype)
    wrapped = keras.Model(inputs, model(inputs, training=False), name=model.name)
    wrapped(
        np.zeros((1, *[d or 32 for d in model.input_shape[1:]]), dtype="float32")
    )  # exporters need a call
    return wrapped


def reject(path: Path) -> Path:
    """Move an artifact that failed the guardrail away from its shipping name."""
    target = path.with_name(path.name + REJECTED)
    os.replace(path, target)
    weights = path.with_suffix(".bin")
    if path.suffix == ".xml" and weights.exists():
        os.replace(weights, weights.with_name(weights.name + REJECTED))
    return target


def next_export_dir(parent: Path) -> Path:
    """``parent/1``, ``parent/2``, ...: the first number not taken (never an earlier export)."""
    taken = [int(p.name) for p in parent.iterdir() if p.name.isdigit()] if parent.is_dir() else []
    return parent / str(max(taken, default=0) + 1)


def input_spec(fmt: str, metadata: dict, quantization: str = "none", int8_io: str = "float32") -> dict:
    """The input tensor one artifact takes, as documented in docs/export.md."""
    channels = 1 if metadata["color_mode"] == "grayscale" else 3
    dtype = int8_io if (fmt == "litert" and quantization in INT8) else "float32"
    layout = "NHWC"
    return {
        "shape": ["batch", "height", "width", channels],
        "dtype": dtype,
        "layout": layout,
        "range": "raw pixels 0..255, RGB order" if channels == 3 else "raw pixels 0..255, grayscale",
        "resized_inside_to": list(metadata["image_size"]),
    }


def _calibration_images(model_path: Path, metadata: dict, count: int, seed: int, log) -> np.ndarray:
    """A seeded sample of the run's training images, decoded exactly as training decodes them."""
    from imgai.data import load_images
    from imgai.evaluate import run_config_and_splits

    _, splits = run_config_and_splits(
        model_path,
        "int8 calibration uses the run's training images; export from a run folder, or use --quantize dynamic",
    )
    train = splits.train
    if train.class_names != list(metadata["class_names"]):
        raise ImgaiError(f"the training data of '{model_path.parent}' no longer has the model's classes")
    rng = np.random.RandomState(seed)
    chosen = np.sort(rng.choice(len(train), size=min(count, len(train)), replace=False))
    log(f"Calibrating int8 on {len(chosen)} training images from {train.source} (seed {seed})")
    decoded = load_images(
        train.subset(chosen),
        tuple(metadata["image_size"]),
        metadata["color_mode"],
        metadata.get("interpolation", "bilinear"),
        progress=False,
    )
    return decoded.images


# ------------------------------------------------------------------------------------- export


def export_model(
    model_path: str | Path,
    formats: list[str] | str,
    quantize: str = "none",
    output_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    guard: Guardrail | None = None,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    int8_io: str = "float32",
    seed: int = 1337,
    batch_size: int = 32,
    log: Callable[[str], None] = print,
    timing_seconds: float = 1.5,
) -> dict:
    """Export ``model_path`` (a ``.keras`` from ``imgai train``) to ``formats``, check every
    artifact against it and write ``export.json``, ``imgai.json`` and ``model_card.md``.

    Returns the report (``export.json``'s content); ``report["passed"]`` is False when an
    artifact was refused by the guardrail (it is then renamed ``<name>.rejected``). The export
    folder appears only when it is complete: it is written under a temporary name first.
    """
    from imgai.data import load_images
    from imgai.evaluate import compute_metrics, eval_files_from_folder, eval_files_from_run
    from imgai.predict import run_inference
    from imgai.runs import CONFIG_FILE, atomic_write_text

    formats = parse_formats(formats)
    if quantize not in QUANTIZATIONS:
        raise ImgaiError(f"unknown quantization '{quantize}': choose from {', '.join(QUANTIZATIONS)}")
    if int8_io not in INT8_IO:
        raise ImgaiError(f"unknown int8 input/output type '{int8_io}': choose from {', '.join(INT8_IO)}")
    if quantize != "none" and "litert" not in formats:
        raise ImgaiError(
            f"--quantize {quantize} applies to the litert format: add litert to --format (e.g. --format litert)"
        )
    guard = (guard or Guardrail()).validate()
    model_path = Path(model_path)
    if model_path.suffix != ".keras":
        raise ImgaiError(
            f"'{model_path}' is not a .keras file: export starts from a model 'imgai train' wrote"
        )
    _check_installed(formats)
    if output_dir is not None:
        final = Path(output_dir)
        if final.exists() and (not final.is_dir() or any(final.iterdir())):
            raise ImgaiError(f"output folder '{final}' exists and is not empty: choose a new -o folder")
    else:
        final = next_export_dir(model_path.parent / "export")

    from imgai.modelfile import load_model
    from imgai.quiet import import_keras

    keras = import_keras()
    model, info = load_model(model_path)
    meta = info.to_metadata()
    classes = list(info.class_names)
    # Quantization applies to litert alone, and auto starts with int8-per-tensor. Sampled before
    # the check images are decoded, so a model outside its run folder fails at once.
    calibration = (
        _calibration_images(model_path, meta, calibration_images, seed, log)
        if quantize in (*INT8, "auto")
        else None
    )
    files = (
        eval_files_from_folder(data_dir, classes)
        if data_dir is not None
        else eval_files_from_run(model_path, classes)
    )
    decoded = load_images(
        files,
        tuple(meta["image_size"]),
        meta["color_mode"],
        meta.get("interpolation", "bilinear"),
        progress=False,
    )
    if len(decoded) == 0:
        raise ImgaiError(f"none of the images in '{files.source}' could be read")
    log(f"Checking every artifact on {len(decoded)} images from {files.source}")
    reference = run_inference(model, decoded, batch_size)
    reference_metrics = compute_metrics(reference, decoded.labels, classes)
    keras_speed = measure_speed(model.predict_on_batch, decoded.images, timing_seconds)
    keras_size = model_path.stat().st_size

    metadata = {
        "class_names": list(classes),
        "image_size": list(meta["image_size"]),
        "color_mode": meta["color_mode"],
        "channels": 1 if meta["color_mode"] == "grayscale" else 3,
        "interpolation": meta.get("interpolation", "bilinear"),
        "input": "raw pixels 0..255 as float32, NHWC, any height and width (resized inside)",
        "source_model": str(model_path),
        "keras_version": keras.__version__,
    }
    final.parent.mkdir(parents=True, exist_ok=True)
    work = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        rows, failures = [], []
        check = _Check(decoded, reference, reference_metrics, guard, batch_size, timing_seconds, log)
        for fmt in formats:
            candidates = [quantize if fmt == "litert" else "none"]
            if candidates[0] == "auto":
                candidates = list(AUTO_ORDER)
            for quantization in candidates:
                row = _export_one(model, fmt, quantization, work, metadata, calibration, int8_io, check)
                rows.append(row)
                if row["passed"]:
                    break
                if quantize != "auto" or quantization == candidates[-1]:
                    failures.append(row)
        report = {
            "model": str(model_path),
            "model_size_bytes": keras_size,
            "data": files.source,
            "num_images": len(decoded),
            "keras": {
                "accuracy": reference_metrics["accuracy"],
                "f1_macro": reference_metrics["f1_macro"],
                "backend": keras.backend.backend(),
                **keras_speed,
            },
            "quantize": quantize,
            "guardrail": _describe_guard(guard),
            "artifacts": rows,
            "passed": not failures,
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "folder": str(final),
        }
        sidecar = {**metadata, "artifacts": {r["file"]: _sidecar_entry(r) for r in rows}}
        atomic_write_text(work / SIDECAR, json.dumps(sidecar, indent=2) + "\n")
        atomic_write_text(work / EXPORT_FILE, json.dumps(report, indent=2) + "\n")
        atomic_write_text(work / MODEL_CARD, model_card(report, metadata, model_path))
        run_config = model_path.parent / CONFIG_FILE
        if run_config.is_file():  # so `imgai eval --model <artifact>` finds the run's test split
            shutil.copyfile(run_config, work / CONFIG_FILE)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(format_table(report))
    log(f"Wrote {final}/: " + ", ".join(sorted(p.name for p in final.iterdir())))
    for row in failures:
        log(failure_line(row))
    return report


@dataclass
class _Check:
    """What every artifact is compared with: the decoded images and the .keras's answers."""

    decoded: Any
    reference: np.ndarray
    reference_metrics: dict
    guard: Guardrail
    batch_size: int
    timing_seconds: float
    log: Callable[[str], None]


def _export_one(model, fmt, quantization, folder, metadata, calibration, int8_io, check: _Check) -> dict:
    """Write, reload, score and guard one artifact; returns its row of the report."""
    from imgai.predict import run_inference

    decoded, reference, reference_metrics = check.decoded, check.reference, check.reference_metrics
    guard, batch_size, log = check.guard, check.batch_size, check.log

    label = fmt if quantization == "none" else f"{fmt} {quantization}"
    log(f"Exporting {label} ...")
    start = time.perf_counter()
    path = write_artifact(model, fmt, quantization, folder, metadata, calibration, int8_io)
    seconds = time.perf_counter() - start
    if fmt == "keras":
        from imgai.modelfile import load_model

        runner, _ = load_model(path)
        runtime = "keras"
    else:
        runner, _ = load_artifact(path, metadata)
        runtime = runner.runtime
    probabilities = run_inference(runner, decoded, batch_size)
    metrics = compare(reference, probabilities, decoded.labels, metadata["class_names"])
    quantized = quantization != "none"
    checks = check_artifact(guard, quantized, metrics, reference_metrics)
    passed = all(c.passed for c in checks)
    row = {
        "format": fmt,
        "quantization": quantization,
        "file": path.name,
        "size_bytes": artifact_size(path),
        "runtime": runtime,
        "export_seconds": round(seconds, 2),
        "input": input_spec(fmt, metadata, quantization, int8_io),
        "agreement": metrics["agreement"],
        "mean_abs_dp": metrics["mean_abs_dp"],
        "max_abs_dp": metrics["max_abs_dp"],
        "accuracy": metrics["accuracy"],
        "accuracy_keras": reference_metrics["accuracy"],
        "f1_macro": metrics["f1_macro"],
        "f1_macro_keras": reference_metrics["f1_macro"],
        "recall_change": metrics["recall_change"],
        **measure_speed(runner.predict_on_batch, decoded.images, check.timing_seconds),
        "checks": [c.to_dict() for c in checks],
        "passed": passed,
    }
    if not passed:
        row["file"] = reject(path).name
        own = check_artifact(guard, quantized, {**reference_metrics, "agreement": 1.0}, reference_metrics)
        row["next_try"] = (
            _NEXT_TRY[quantization]
            if all(c.passed for c in own)
            else "the .keras model fails this check too, so it is the model, not the export: "
            "try a looser bound or a better-trained model"
        )
    return row


def _describe_guard(guard: Guardrail) -> dict:
    if guard.is_default():
        return {
            "float": {"min_agreement": DEFAULT_MIN_AGREEMENT},
            "quantized": {"max_drop": dict(DEFAULT_MAX_DROP)},
        }
    return {
        "min_agreement": guard.min_agreement,
        "max_drop": dict(guard.max_drop),
        "min_class_recall": guard.min_class_recall,
    }


def _sidecar_entry(row: dict) -> dict:
    return {
        "format": row["format"],
        "quantization": row["quantization"],
        "input": row["input"],
        "passed": row["passed"],
    }


def failure_line(row: dict) -> str:
    failed = [c for c in row["checks"] if not c["passed"]]
    reasons = "; ".join(
        f"{c['metric']} {c['measured']:.4f} {'<' if c['op'] == '>=' else '>'} {c['bound']:.4f}"
        for c in failed
    )
    label = row["format"] + ("" if row["quantization"] == "none" else f" {row['quantization']}")
    return f"REFUSED {label}: {reasons}; kept as {row['file']} (not for shipping): {row['next_try']}"


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e5 else f"{size / 1e3:.1f} kB"


def format_table(report: dict) -> str:
    """One row per artifact, the .keras first as the reference."""
    header = (
        f"  {'artifact':<26} {'size':>9} {'agree':>7} {'max|Δp|':>8} {'acc':>7} {'Δacc':>6} "
        f"{'F1':>7} {'p50 ms':>7} {'p95 ms':>7} {'img/s':>7}  verdict"
    )
    k = report["keras"]
    lines = [
        header,
        f"  {Path(report['model']).name + ' (Keras)':<26} {_mb(report['model_size_bytes']):>9} {'-':>7} {'-':>8} "
        f"{k['accuracy']:>7.2%} {'-':>6} {k['f1_macro']:>7.2%} {k['latency_ms_p50']:>7.2f} "
        f"{k['latency_ms_p95']:>7.2f} {k['throughput_ips']:>7.0f}  reference",
    ]
    for r in report["artifacts"]:
        lines.append(
            f"  {r['file']:<26} {_mb(r['size_bytes']):>9} {r['agreement']:>7.2%} {r['max_abs_dp']:>8.4f} "
            f"{r['accuracy']:>7.2%} {100 * (r['accuracy'] - r['accuracy_keras']):>+6.1f} {r['f1_macro']:>7.2%} "
            f"{r['latency_ms_p50']:>7.2f} {r['latency_ms_p95']:>7.2f} {r['throughput_ips']:>7.0f}  "
            + ("shipped" if r["passed"] else "REFUSED")
        )
    return "\n".join(lines)


def model_card(report: dict, metadata: dict, model_path: Path) -> str:
    """model_card.md: what the model is, what it takes, how it scored, what is left to the owner."""
    from imgai.runs import CONFIG_FILE

    config_path = model_path.parent / CONFIG_FILE
    config_text = config_path.read_text(encoding="utf-8") if config_path.is_file() else "(no config.yaml)"
    k = report["keras"]
    size = metadata["image_size"]
    lines = [
        f"# Model card: {model_path.parent.name}",
        "",
        "## Classes",
        "",
        ", ".join(f"`{c}`" for c in metadata["class_names"]),
        "",
        "## Input",
        "",
        f"Raw pixels 0..255 ({metadata['color_mode']}, {metadata['channels']} channel(s)), float32, NHWC "
        f"(batch, height, width, channels), any height and width: each artifact resizes to "
        f"{size[0]}x{size[1]} ({metadata['interpolation']}) and rescales inside. Output: one probability "
        "per class, in the order above.",
        "",
        "## Training data and configuration",
        "",
        f"Trained by imgai from `{model_path}`; the run's configuration:",
        "",
        "```yaml",
        config_text.rstrip(),
        "```",
        "",
        "## Metrics",
        "",
        f"On {report['num_images']} images from `{report['data']}`: accuracy {k['accuracy']:.2%}, "
        f"macro-F1 {k['f1_macro']:.2%} (the .keras model, Keras on the {k['backend']} backend).",
        "",
        "## Artifacts and parity with the .keras",
        "",
        "| file | format | quantization | size | agreement | max abs Δp | accuracy | batch-1 p50 ms |"
        " batch-32 img/s | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['file']} | {r['format']} | {r['quantization']} | {_mb(r['size_bytes'])} | "
            f"{r['agreement']:.2%} | {r['max_abs_dp']:.4f} | {r['accuracy']:.2%} | {r['latency_ms_p50']:.2f} | "
            f"{r['throughput_ips']:.0f} | {'shipped' if r['passed'] else 'refused'} |"
            for r in report["artifacts"]
        ),
        "",
        f"Measured {report['timestamp']} on the exporting machine's CPU.",
        "",
        "## Intended use",
        "",
        "_To be filled in by the model's owner: what the model is for, who uses it, on what images._",
        "",
        "## Limits",
        "",
        "_To be filled in by the model's owner: images and conditions it was not trained or tested on, "
        "known failure cases, classes it confuses._",
        "",
    ]
    return "\n".join(lines)
