"""imgai export: every format written, re-scored by its own runtime, guarded, and usable by
predict and eval; int8 calibrated on the run's images; bad input gives one line and exit 2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import REPO

HAVE_EXPORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "tf2onnx", "ai_edge_litert"))
HAVE_OPENVINO = importlib.util.find_spec("openvino") is not None
needs_export = pytest.mark.skipif(not HAVE_EXPORT, reason="needs pip install -e '.[export]'")
TINY = [
    "model.filters=[4,8]",
    "model.dense_units=16",
    "data.image_size=[32,32]",
    "data.batch_size=8",
    "train.epochs=3",
]


def imgai(*args, cwd):
    """The CLI in this process (click's runner): same code and exit codes, no extra start-up."""
    from click.testing import CliRunner

    from imgai.cli import cli

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, list(args), prog_name="imgai")
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory, split_dataset):
    """A tiny trained run at runs/m (32 px, 4 and 8 conv filters)."""
    from imgai.config import load_config
    from imgai.quiet import import_keras
    from imgai.train import train

    import_keras()
    work = tmp_path_factory.mktemp("exportproject")
    config = load_config([], [f"data.root={split_dataset}", f"output.dir={work / 'runs'}", *TINY])
    train(config, name="m", log=lambda _line: None)
    return work


def export(project, *args):
    return imgai("export", "--run", "m", "--timing", "0", *args, cwd=project)


@pytest.mark.slow
@needs_export
def test_every_format_matches_the_keras_model_and_runs_in_predict_and_eval(project, split_dataset):
    formats = "keras,savedmodel,onnx,litert" + (",openvino" if HAVE_OPENVINO else "")
    result = export(project, "--format", formats, "-o", "runs/m/export/all")
    assert result.exit_code == 0, result.output
    folder = project / "runs" / "m" / "export" / "all"
    report = json.loads((folder / "export.json").read_text())
    assert report["passed"] and report["num_images"] == 12  # the run's test split
    for row in report["artifacts"]:
        assert row["agreement"] >= 0.995 and row["max_abs_dp"] < 1e-3, row
        assert row["accuracy"] == pytest.approx(report["keras"]["accuracy"])
        assert row["latency_ms_p50"] > 0 and row["throughput_ips"] > 0 and row["size_bytes"] > 0
        assert [c["metric"] for c in row["checks"]] == ["agreement"]  # the float default
    assert {"imgai.json", "export.json", "model_card.md", "config.yaml"} <= {p.name for p in folder.iterdir()}
    assert "model.onnx" in result.output and "reference" in result.output  # the printed table

    # Metadata inside each artifact, and always beside it.
    import onnx

    classes = ["circle", "square", "triangle"]
    props = {p.key: p.value for p in onnx.load(str(folder / "model.onnx")).metadata_props}
    assert json.loads(props["class_names"]) == classes and props["color_mode"] == "rgb"
    with zipfile.ZipFile(folder / "model.tflite") as packed:
        assert json.loads(packed.read("imgai.json"))["image_size"] == [32, 32]
    assert (
        json.loads((folder / "saved_model" / "assets" / "imgai.json").read_text())["class_names"] == classes
    )
    assert json.loads((folder / "imgai.json").read_text())["class_names"] == classes

    # The keras format is inference-only and loads in plain Keras.
    import keras

    plain = keras.saving.load_model(folder / "model.keras")
    assert getattr(plain, "optimizer", None) is None and plain.output_shape == (None, 3)
    with zipfile.ZipFile(folder / "model.keras") as packed:
        assert sorted(packed.namelist()) == ["config.json", "imgai.json", "metadata.json", "model.weights.h5"]
    assert (folder / "model.keras").stat().st_size < (project / "runs/m/best.keras").stat().st_size

    # predict and eval take every artifact; eval gates the exact file that ships.
    test_image = str(next((split_dataset / "test" / "circle").glob("*.png")))
    answers = set()
    for name in ["model.onnx", "model.tflite", "saved_model", "model.keras"] + (
        ["model.xml"] if HAVE_OPENVINO else []
    ):
        predicted = imgai(
            "predict", test_image, "--model", str(folder / name), "--format", "jsonl", cwd=project
        )
        assert predicted.exit_code == 0, predicted.output
        top = json.loads(predicted.stdout)["predictions"][0]
        answers.add((top["class"], top["probability"]))
    assert len({c for c, _ in answers}) == 1, answers
    assert np.ptp([p for _, p in answers]) < 1e-3, answers
    accuracy = report["keras"]["accuracy"]
    passed = imgai(
        "eval", "--model", str(folder / "model.tflite"), "--fail-under", f"accuracy={accuracy - 0.01:.4f}",
        cwd=project,
    )  # fmt: skip
    assert passed.exit_code == 0, passed.output
    from imgai.runs import latest_eval_dir

    metrics = json.loads((latest_eval_dir(folder) / "metrics.json").read_text())
    assert (
        metrics["accuracy"] == pytest.approx(accuracy) and "litert" in metrics["backend"].lower() + "litert"
    )
    failed = imgai(
        "eval", "--model", str(folder / "model.onnx"), "--fail-under", "accuracy=1.01", cwd=project
    )
    assert failed.exit_code == 1 and "FAILED" in failed.output


@pytest.mark.slow
@needs_export
def test_int8_is_calibrated_smaller_and_a_failing_artifact_is_refused(project):
    result = export(project, "--format", "litert", "--quantize", "int8", "--max-drop", "accuracy=1")
    assert result.exit_code == 0, result.output
    assert "Calibrating int8 on 36 training images" in result.output
    folder = project / "runs" / "m" / "export" / "1"  # the first default export folder
    row = json.loads((folder / "export.json").read_text())["artifacts"][0]
    assert row["file"] == "model.int8.tflite" and row["quantization"] == "int8" and row["passed"]

    from imgai.artifacts import load_artifact

    artifact, meta = load_artifact(folder / "model.int8.tflite")
    probabilities = artifact.predict_on_batch(np.full((2, 50, 40, 3), 128, np.float32))  # any size
    assert probabilities.shape == (2, 3) and np.allclose(probabilities.sum(1), 1, atol=0.02)

    # An impossible bound: the artifact leaves its shipping name, the report stays, exit 1.
    refused = export(project, "--format", "onnx", "--min-class-recall", "1.0", "--min-agreement", "1.0")
    second = project / "runs" / "m" / "export" / "2"  # never overwrites export 1
    report = json.loads((second / "export.json").read_text())
    if report["artifacts"][0]["accuracy"] < 1.0:
        assert refused.exit_code == 1, refused.output
        assert "REFUSED onnx" in refused.output and "the .keras model fails this check too" in refused.output
        assert (second / "model.onnx.rejected").is_file() and not (second / "model.onnx").exists()
        assert not report["passed"]
    else:  # a perfect tiny model passes even that
        assert refused.exit_code == 0

    # auto keeps the smallest file that passes: per-tensor int8 is tried first.
    smallest = export(project, "--format", "litert", "--quantize", "auto", "--max-drop", "accuracy=1")
    assert smallest.exit_code == 0, smallest.output
    rows = json.loads((project / "runs" / "m" / "export" / "3" / "export.json").read_text())["artifacts"]
    assert [(r["file"], r["passed"]) for r in rows] == [("model.int8-per-tensor.tflite", True)]


def test_the_guardrail_fails_a_model_whose_preprocessing_was_lost():
    """An artifact fed images rescaled twice (0..1 into a model that divides by 255 itself)."""
    from imgai.export import Guardrail, check_artifact, compare
    from imgai.gate import format_results

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) * 3
    reference = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = reference.argmax(1)
    flat = np.full_like(reference, 0.25)  # what a model sees of a near-black image
    flat[:, 0] += 1e-3
    classes = ["a", "b", "c", "d"]
    ref_metrics = compare(reference, reference, labels, classes)
    broken = compare(reference, flat, labels, classes)
    assert broken["agreement"] < 0.5
    checks = check_artifact(Guardrail(), False, broken, ref_metrics)
    assert not all(c.passed for c in checks)
    assert "FAILED  agreement" in format_results(checks)
    quantized = check_artifact(Guardrail(), True, broken, ref_metrics)  # accuracy drop <= 0.01
    assert [c.metric for c in quantized] == ["accuracy"] and not quantized[0].passed
    assert all(c.passed for c in check_artifact(Guardrail(), False, ref_metrics, ref_metrics))


def test_bad_input_gives_one_line_and_exit_2(project, tmp_path, split_dataset):
    unknown = export(project, "--format", "onnx,tensorrt")
    assert unknown.exit_code == 2 and "unknown export format 'tensorrt'" in unknown.output
    drop = export(project, "--format", "onnx", "--max-drop", "speed=0.1")
    assert drop.exit_code == 2 and "unknown metric 'speed'" in drop.output
    quantize = export(project, "--format", "onnx", "--quantize", "int8")
    assert quantize.exit_code == 2 and "applies to the litert format" in quantize.output
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    taken = export(project, "--format", "keras", "-o", str(busy))
    assert taken.exit_code == 2 and "not empty" in taken.output and (busy / "x").read_text() == "keep me"
    other = tmp_path / "other"
    (other / "dog").mkdir(parents=True)
    (other / "cat").mkdir()
    wrong = export(project, "--format", "keras", "--data", str(other))
    assert wrong.exit_code == 2 and "differ from the model's classes" in wrong.output
    assert not list((project / "runs" / "m").glob("export/.*tmp*"))  # nothing half-written
    alone = tmp_path / "alone" / "best.keras"  # outside its run folder: no training images
    alone.parent.mkdir()
    alone.write_bytes((project / "runs" / "m" / "best.keras").read_bytes())
    uncalibrated = imgai(
        "export", "--model", str(alone), "--format", "litert", "--quantize", "int8", cwd=project
    )
    assert uncalibrated.exit_code == 2 and "use --quantize dynamic" in uncalibrated.output
    assert sorted(p.name for p in alone.parent.iterdir()) == ["best.keras"]  # no export folder begun

    corrupt = tmp_path / "model.onnx"
    corrupt.write_bytes(b"not an onnx file")
    (tmp_path / "imgai.json").write_text(json.dumps({"class_names": ["a", "b"], "image_size": [32, 32]}))
    image = str(next((split_dataset / "test" / "circle").glob("*.png")))
    if HAVE_EXPORT:
        bad = imgai("predict", image, "--model", str(corrupt), cwd=project)
        assert bad.exit_code == 2 and "could not load onnx artifact" in bad.output
        assert len(bad.output.strip().splitlines()) == 1
    lonely = tmp_path / "lonely" / "model.tflite"
    lonely.parent.mkdir()
    lonely.write_bytes(b"x")
    bare = imgai("predict", image, "--model", str(lonely), cwd=project)
    assert bare.exit_code == 2 and "carries no class names" in bare.output


# Blocks TensorFlow, Keras (and, when asked, onnxruntime) the way a Python without them fails.
BLOCKED = """
import atexit, importlib.abc, os, sys

BLOCK = sys.argv.pop(1).split(",")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"No module named '{name}' (blocked by the test)")
        return None

sys.meta_path.insert(0, Block())

def check():
    leaked = [m for m in ("tensorflow", "keras") if m in sys.modules]
    if leaked:
        sys.stderr.write(f"IMPORTED {leaked}\\n")
        os._exit(3)

atexit.register(check)
from imgai.cli import main
sys.argv[0] = "imgai"
main()
"""


def _blocked(block: str, *args, cwd):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-c", BLOCKED, block, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
@needs_export
def test_predicting_with_onnx_or_litert_imports_neither_tensorflow_nor_keras(project, split_dataset):
    folder = project / "runs" / "m" / "export" / "light"
    assert export(project, "--format", "onnx,litert", "-o", str(folder)).exit_code == 0
    image = str(next((split_dataset / "test" / "square").glob("*.png")))
    for name in ("model.onnx", "model.tflite"):
        result = _blocked("tensorflow,keras", "predict", image, "--model", str(folder / name), cwd=project)
        assert result.returncode == 0, result.stderr + result.stdout
        assert result.stdout.startswith(image)
    missing = _blocked(
        "tensorflow,keras,onnxruntime", "predict", image, "--model", str(folder / "model.onnx"), cwd=project
    )
    assert missing.returncode == 2 and "pip install" in missing.stderr and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


@needs_export
def test_exported_batchnorm_uses_its_moving_statistics(tmp_path):
    """A saved graph records training=True on its resize node; exported as traced, every
    BatchNormalization after it normalised each batch by its own statistics (an ONNX file that
    answered per batch, not per image). The exporters get the model in inference mode."""
    import keras
    import onnx
    import onnxruntime as ort

    from imgai.config import load_config
    from imgai.export import write_artifact
    from imgai.modelfile import load_model, save_model
    from imgai.models import create_model

    settings = load_config([], ["model.name=sepresnet", "model.widths=[4,8,8]", "model.depth=1"])
    model = create_model(settings.model, (32, 32), 3, 3)
    for layer in model.layers:  # moving statistics far from any one batch's
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(np.full(layer.moving_mean.shape, 0.5, "float32"))
            layer.moving_variance.assign(np.full(layer.moving_variance.shape, 4.0, "float32"))
    save_model(model, tmp_path / "m.keras", {"class_names": ["a", "b", "c"], "image_size": [32, 32]})
    loaded, info = load_model(tmp_path / "m.keras")
    path = write_artifact(loaded, "onnx", "none", tmp_path, info.to_metadata())
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "ReduceMean" not in ops  # no batch statistics in the graph
    images = np.random.default_rng(0).integers(0, 256, (6, 40, 30, 3)).astype("float32")
    session = ort.InferenceSession(str(path))
    exported = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(exported, loaded.predict(images, verbose=0), atol=1e-4)
    one = session.run(None, {session.get_inputs()[0].name: images[:1]})[0]
    np.testing.assert_allclose(one[0], exported[0], atol=1e-5)  # an image's answer, whatever its batch


@needs_export
def test_int8_per_tensor_drops_the_per_channel_scales(tmp_path):
    """int8 scales each output channel of a weight tensor (a float32 scale and an int64 zero point
    apiece); int8-per-tensor keeps one scale per convolution's weights: a smaller file."""
    from ai_edge_litert.interpreter import Interpreter

    from imgai.artifacts import load_artifact
    from imgai.config import load_config
    from imgai.export import write_artifact
    from imgai.models import create_model

    settings = load_config([], ["model.name=sepresnet", "model.widths=[16,32,64]", "model.depth=1"])
    model = create_model(settings.model, (32, 32), 3, 3)
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (16, 32, 32, 3)).astype("float32")
    metadata = {"class_names": ["a", "b", "c"], "image_size": [32, 32], "color_mode": "rgb"}
    scales, sizes, answers = {}, {}, {}
    for quantization in ("int8", "int8-per-tensor"):
        path = write_artifact(model, "litert", quantization, tmp_path, metadata, calibration)
        sizes[quantization] = path.stat().st_size
        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        scales[quantization] = [
            len(t["quantization_parameters"]["scales"]) for t in interpreter.get_tensor_details()
        ]
        runner, _ = load_artifact(path, metadata)
        answers[quantization] = runner.predict_on_batch(calibration[:8])
    assert max(scales["int8"]) == 64  # the widest convolution, a scale per output channel
    assert max(scales["int8-per-tensor"]) <= 3  # one per tensor (the softmax Dense keeps its 3)
    assert sum(scales["int8-per-tensor"]) * 4 < sum(scales["int8"])
    assert sizes["int8-per-tensor"] < sizes["int8"]
    np.testing.assert_allclose(answers["int8-per-tensor"].sum(1), 1, atol=0.02)
