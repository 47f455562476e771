"""The ``imgai`` command line: a thin shell over the library's functions.

Each command parses its arguments, calls one library function, and turns
:class:`~imgai.errors.ImgaiError` into one line on stderr and exit code 2. Nothing heavy is
imported at module level, so ``imgai --help`` never loads TensorFlow.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import sys

import click

from imgai import __version__
from imgai.errors import ImgaiError
from imgai.names import HIGHER_IS_BETTER, LOWER_IS_BETTER, PREDICTION_FORMATS
from imgai.text import printable, printable_lines

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# The library names parameters and config keys in its messages; here they become the flags.
FLAGS = {
    "model_path": "--model",
    "run": "--run",
    "runs_dir": "--runs-dir",
    "data_dir": "--data",
    "output_dir": "--output-dir",
    "output": "--output",
    "config": "--config",
    "name": "--name",
    "layer": "--layer",
    "class_name": "--class",
    "infer.batch_size": "--batch-size",
    "eval.top_k": "--top-k",
    "eval.fail_under": "--fail-under",
    "eval.fail_over": "--fail-over",
    "eval.min_class_recall": "--min-class-recall",
    "eval.baseline": "--baseline",
    "eval.max_drop": "--max-drop",
    "eval.significance": "--significance",
    "eval.target_accuracy": "--target-accuracy",
    "infer.min_confidence": "--min-confidence",
    "infer.unknown_label": "--unknown-label",
    "fail_on": "--fail-on",
    "label_issues": "--label-issues",
    "folds": "--folds",
    "target_accuracy": "--target-accuracy",
}
SCHEMA_DEFAULT = "default: {key} in the config, see 'imgai config show'"


_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.EIO,
    errno.EXDEV,
    errno.ELOOP,
}
_HINT = "check the path and that its folder is writable"
_ERRNO_HINTS = {
    errno.ENOSPC: "free some space or write elsewhere",
    errno.EDQUOT: "free some space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
}


# eval and predict average over the same views.
tta_option = click.option(
    "--tta",
    default=None,
    type=click.Choice(["none", "flip", "flip+crops"]),
    help="Test-time augmentation: average over the image and its mirror (flip) or also four corner "
    f"crops (flip+crops, 10x slower) ({SCHEMA_DEFAULT.format(key='infer.tta')}).",
)


def model_options(verb: str, artifacts: bool = False):
    """--model / --run / --runs-dir, the same for every command that reads a trained model."""
    model_help = (
        "A .keras file or run folder, or an exported model.onnx, model.tflite, model.xml or "
        "SavedModel folder (default: latest run's best.keras)."
        if artifacts
        else "A .keras file or run folder (default: latest run's best.keras)."
    )
    options = [
        click.option("--model", "model_path", default=None, metavar="PATH", help=model_help),
        click.option("--run", default=None, metavar="NAME", help=f"{verb} this run's best.keras."),
        click.option(
            "--runs-dir", default=None, metavar="DIR", help="Where runs live (default: output.dir, runs)."
        ),
    ]

    def apply(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def _handle_errors(fn):
    """User mistakes -> one line and their exit code; Ctrl-C -> exit 130; no tracebacks for either."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not in Python's exit-time flush
            return result
        except BrokenPipeError:
            # `imgai predict DIR | head -2`: the reader has what it wanted. End quietly, with the
            # status of a tool stopped by SIGPIPE, and keep Python's final flush from complaining.
            _silence_stdout()
            sys.exit(141)
        except ImgaiError as exc:
            click.echo(f"Error: {printable(exc.worded(FLAGS))}", err=True)
            sys.exit(exc.exit_code)
        except OSError as exc:
            # The disk, not imgai: full, read-only, no permission, a path that cannot exist. Every
            # write goes through runs.atomic_path, so nothing half-written stays behind.
            if exc.errno not in _ENVIRONMENT_ERRNOS:
                raise
            from imgai.runs import describe_os_error

            click.echo(
                f"Error: {printable(describe_os_error(exc))}: {_ERRNO_HINTS.get(exc.errno, _HINT)}", err=True
            )
            sys.exit(2)
        except ValueError as exc:
            if "null byte" not in str(exc):
                raise
            click.echo("Error: a path holds a NUL character: give a plain file or folder path", err=True)
            sys.exit(2)
        except KeyboardInterrupt as exc:
            from imgai.errors import Terminated

            terminated = isinstance(exc, Terminated)
            if not getattr(exc, "imgai_reported", False):  # training has already said what to do next
                click.echo("Stopped (SIGTERM)." if terminated else "Interrupted.", err=True)
            sys.exit(143 if terminated else 130)

    return wrapper


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a file (a test runner's buffer)
        pass


_VERDICT = re.compile(r"^(\s*)(PASSED|FAILED)\b", re.MULTILINE)


def _paint(text: str) -> str:
    """PASSED green and FAILED red on a terminal; plain in pipes, logs and with NO_COLOR set."""
    if not sys.stdout.isatty() or os.environ.get("NO_COLOR"):
        return text
    colours = {"PASSED": "green", "FAILED": "red"}
    return _VERDICT.sub(
        lambda m: m.group(1) + click.style(m.group(2), fg=colours[m.group(2)], bold=True), text
    )


def _echo(text: str) -> None:
    # Names from the user's disk reach the terminal here: control characters are escaped.
    click.echo(_paint(printable_lines(text)))


def _single_device_note(model_path, command: str) -> None:
    from imgai.distribute import single_device_note

    note = single_device_note(model_path, command)
    if note:
        click.echo(note, err=True)  # stderr: predictions may be going to stdout


def _resolve_model(model_path, run, runs_dir):
    from imgai.runs import resolve_model_path

    return resolve_model_path(model_path, run, runs_dir)


def _announce_model(path) -> None:
    """The model a command uses, named on stderr with its run and score (stdout may be data).
    Said once the usage checks have passed, so a mistake stays a single error line."""
    from imgai.resume import describe_model

    click.echo(printable(describe_model(path)), err=True)


def _load_keras() -> None:
    from imgai.quiet import import_keras

    import_keras()


def _run_settings(model_path, sections: tuple[str, ...], **updates):
    """The given sections of the model's run config.yaml (schema defaults where it has none),
    then ``updates`` (section -> mapping, from flags)."""
    from imgai.config import load_sections
    from imgai.runs import CONFIG_FILE

    run_config = model_path.parent / CONFIG_FILE
    return load_sections([run_config] if run_config.is_file() else [], sections, **updates)


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="imgai")
@click.option(
    "--verbose", is_flag=True, help="Show framework logs (TensorFlow/JAX) that imgai hides by default."
)
def cli(verbose: bool) -> None:
    """Train, evaluate and use image classifiers from a folder of images.

    \b
    A data folder holds one sub-folder per class (cats/, dogs/, ...), or train/ val/ test/
    sub-folders that each hold the class folders. Settings come from YAML files plus
    key.sub=value overrides; 'imgai config show' lists every setting and its default.

    \b
    Typical session:
      imgai train --config configs/cnn.yaml train.epochs=5
      imgai eval                      # scores the latest run's best model
      imgai predict photo.jpg         # class names with probabilities
      imgai explain photo.jpg         # heat map of what drove the prediction

    \b
    Shell completion (bash; zsh_source or fish_source for zsh or fish):
      eval "$(_IMGAI_COMPLETE=bash_source imgai)"    # add this line to ~/.bashrc
    """
    from imgai.quiet import silence_frameworks

    silence_frameworks(verbose)


# ----------------------------------------------------------------------------------- train


@cli.command(context_settings=CONTEXT, short_help="Train a model into runs/<name>/, or --resume one.")
@click.option(
    "-c",
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="YAML config file; repeat to merge several, later files win.",
)
@click.option(
    "--name",
    default=None,
    help="Run folder name under output.dir (default: run1, run2, ...). Never overwritten.",
)
@click.option(
    "--resume",
    "resume_run",
    default=None,
    metavar="RUN",
    help="Continue RUN (a run folder, or a name under output.dir) from its last completed epoch; "
    "train.epochs=N extends a finished run.",
)
@click.option(
    "--num-processes",
    type=click.IntRange(min=1),
    default=None,
    help="Processes (usually one per machine) that train this run together; default: "
    "KERAS_DISTRIBUTION_NUM_PROCESSES, else 1.",
)
@click.option(
    "--process-id",
    type=int,
    default=None,
    help="This process's number, 0 to N-1; process 0 writes the run. Default: KERAS_DISTRIBUTION_PROCESS_ID.",
)
@click.option(
    "--coordinator",
    default=None,
    metavar="HOST:PORT",
    help="Where process 0 listens (its host and a free port); default: the first address of "
    "KERAS_DISTRIBUTION_JOB_ADDRESSES.",
)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def train(
    configs: tuple[str, ...],
    name: str | None,
    resume_run: str | None,
    num_processes: int | None,
    process_id: int | None,
    coordinator: str | None,
    overrides: tuple[str, ...],
) -> None:
    """Train a model; writes runs/<name>/ with best.keras, last.keras, history.csv, config.yaml.

    \b
    Overrides follow the options as key.sub=value, parsed as YAML:
      imgai train -c configs/cnn.yaml train.epochs=20 data.image_size=[128,128]
      imgai train -c configs/flowers.yaml data.root=~/flower_photos --name flowers
    \b
    Interrupted or finished runs continue where they stopped:
      imgai train --resume runs/flowers
      imgai train --resume runs/flowers train.epochs=30
    \b
    Several processes (JAX backend; see docs/distributed.md), here two on one machine:
      imgai train -c cfg.yaml --num-processes 2 --process-id 0 --coordinator 127.0.0.1:7777
      imgai train -c cfg.yaml --num-processes 2 --process-id 1 --coordinator 127.0.0.1:7777
    """
    from imgai.distribute import cluster_from

    try:
        cluster = cluster_from(num_processes, process_id, coordinator)  # light checks first
    except ImgaiError as exc:  # the library speaks in parameter names; the CLI in its flags
        raise ImgaiError(
            exc.message.replace("num_processes=", "--num-processes ")
            .replace("process_id=", "--process-id ")
            .replace("pass coordinator=HOST:PORT", "pass --coordinator HOST:PORT")
        ) from None
    if resume_run is not None:
        if configs or name:
            raise ImgaiError("--resume continues a run with its own saved config: drop --config and --name")
        from imgai.lock import check_free
        from imgai.resume import check_resume_overrides, find_run

        run_dir = find_run(resume_run)  # light checks before the heavy import
        check_resume_overrides(overrides)
        check_free(run_dir)
        _load_keras()
        from imgai.train import resume

        resume(run_dir, overrides, log=_echo, cluster=cluster)
        return
    from imgai.config import load_config

    config = load_config(configs, overrides)  # config errors come before any heavy import
    _load_keras()
    from imgai.train import train as run_training

    run_training(config, name=name, log=_echo, cluster=cluster)


# ------------------------------------------------------------------------------------ eval


@cli.command(
    "eval", context_settings=CONTEXT, short_help="Score a model, write its report, optionally gate on it."
)
@click.option(
    "--model",
    "model_path",
    default=None,
    metavar="PATH",
    help="A .keras file or run folder, or an exported model.onnx, model.tflite, model.xml or "
    "SavedModel folder (default: latest run's best.keras).",
)
@click.option(
    "--run",
    default=None,
    metavar="NAME",
    help="Use this run's best.keras (a name under --runs-dir, or a folder).",
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    metavar="DIR",
    help="Labelled images to score: one sub-folder per class "
    "(default: the run's test split, else its validation split).",
)
@click.option(
    "--runs-dir", default=None, metavar="DIR", help="Where runs live (default: output.dir of --config, runs)."
)
@click.option(
    "--output-dir",
    default=None,
    metavar="DIR",
    help="Where the report goes (default: a new folder eval/<split>/ beside the model; "
    "eval/<split>-2/ ... when that split was scored before, eval/latest names the newest).",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help=f"Images per inference batch ({SCHEMA_DEFAULT.format(key='infer.batch_size')}).",
)
@click.option(
    "--top-k",
    default=None,
    type=click.IntRange(min=2),
    help="k of the top-k accuracy (default: eval.top_k; empty: 5 with more than 5 classes, else 2).",
)
@click.option(
    "-c",
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="YAML file whose eval: section holds gate checks (merged over the run's config.yaml).",
)
@click.option(
    "--fail-under",
    multiple=True,
    metavar="METRIC=MIN",
    help="Fail (exit 1) if METRIC is below MIN; repeatable. E.g. accuracy=0.9, f1_macro=0.85, "
    "top3_accuracy=0.95.",
)
@click.option(
    "--fail-over",
    multiple=True,
    metavar="METRIC=MAX",
    help="Fail if METRIC is above MAX (for loss); repeatable.",
)
@click.option(
    "--min-class-recall",
    type=float,
    default=None,
    metavar="MIN",
    help="Fail if any class's recall is below MIN.",
)
@click.option(
    "--baseline",
    default=None,
    metavar="PATH",
    help="An earlier eval report, for --max-drop: its predictions.csv (same images: paired test), "
    "report folder, run folder (its newest report of the same split) or metrics.json (bound only).",
)
@click.option(
    "--max-drop",
    multiple=True,
    metavar="METRIC=DELTA",
    help="Fail if METRIC is more than DELTA worse than in --baseline and the drop is significant "
    "(WARN when within noise); repeatable.",
)
@click.option(
    "--significance",
    default=None,
    type=float,
    metavar="ALPHA",
    help=f"Level of the paired test against --baseline ({SCHEMA_DEFAULT.format(key='eval.significance')}).",
)
@click.option(
    "--min-confidence",
    default=None,
    type=float,
    metavar="P",
    help="Also report coverage and accuracy when images below confidence P are answered 'unknown' "
    "(default: infer.min_confidence, else the model's calibrated threshold).",
)
@click.option(
    "--target-accuracy",
    default=None,
    type=float,
    metavar="A",
    help="Print the smallest confidence threshold whose answered validation images reach accuracy A.",
)
@tta_option
@_handle_errors
def eval_cmd(
    model_path,
    run,
    data_dir,
    runs_dir,
    output_dir,
    batch_size,
    top_k,
    configs,
    fail_under,
    fail_over,
    min_class_recall,
    baseline,
    max_drop,
    significance,
    min_confidence,
    target_accuracy,
    tta,
) -> None:
    """Score a trained model and write a full report; optionally gate on the results.

    \b
    Writes metrics.json (with 95 % bootstrap intervals, ECE, Brier, NLL), per_class.csv,
    confusion_matrix.csv, predictions.csv, summary.md and PNG plots (confusion matrix, training
    curves, most confidently wrong images, reliability, risk-coverage) into a new folder
    eval/<split>/ beside the model (never over an earlier report), or into --output-dir.

    \b
    Quality gate: one PASSED/FAILED line per check; exit 0 if all pass, 1 if any fails,
    2 for a usage or config error. Checks can also live in the config's eval: section.
    METRIC_NAMES

    \b
    Examples:
      imgai eval                                   # latest run, its test (or val) split
      imgai eval --run flowers --data ~/holdout    # another folder of class sub-folders
      imgai eval --fail-under accuracy=0.9 --fail-under f1_macro=0.85 --min-class-recall 0.7
      imgai eval --baseline runs/prod --max-drop accuracy=0.01   # paired test on the same images
      imgai eval --target-accuracy 0.95            # threshold for predict --min-confidence
    """
    from imgai.artifacts import is_artifact
    from imgai.config import load_sections
    from imgai.evaluate import eval_settings, evaluate
    from imgai.gate import parse_bounds

    if runs_dir is None and configs:
        runs_dir = load_sections(configs, ("output",)).output.dir
    path = _resolve_model(model_path, run, runs_dir)
    _single_device_note(path, "eval")
    settings = eval_settings(  # usage mistakes exit 2 before TensorFlow loads
        path,
        configs,
        batch_size=batch_size,
        top_k=top_k,
        fail_under=parse_bounds(fail_under, "eval.fail_under"),
        fail_over=parse_bounds(fail_over, "eval.fail_over"),
        min_class_recall=min_class_recall,
        baseline=baseline,
        max_drop=parse_bounds(max_drop, "eval.max_drop"),
        significance=significance,
        target_accuracy=target_accuracy,
        min_confidence=min_confidence,
        tta=tta,
    )
    _announce_model(path)
    if not is_artifact(path):
        _load_keras()
    metrics = evaluate(
        path,
        data_dir,
        batch_size=settings.infer.batch_size,
        log=_echo,
        output_dir=output_dir,
        gate=settings.eval,
        infer=settings.infer,
        tta=settings.infer.tta,
    )
    if not metrics.get("gate", {}).get("passed", True):
        sys.exit(1)


def _metric_help() -> str:
    import textwrap

    names = ", ".join([*HIGHER_IS_BETTER, "topK_accuracy", *LOWER_IS_BETTER])
    text = f"Metrics: {names} (lower is better: --fail-over)."
    return "\n    ".join(textwrap.wrap(text, 92))


eval_cmd.help = eval_cmd.help.replace("METRIC_NAMES", _metric_help())


# ------------------------------------------------------------------------------- calibrate


@cli.command(context_settings=CONTEXT)
@model_options("Calibrate")
@click.option(
    "--target-accuracy",
    type=float,
    default=None,
    metavar="A",
    help="Also pick the smallest confidence threshold that reaches accuracy A on validation (e.g. 0.95) "
    "and store it in the model, so that predict answers 'unknown' below it.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Calibrated model to write (default: calibrated.keras beside the model; never overwritten).",
)
@_handle_errors
def calibrate(model_path, run, runs_dir, target_accuracy, output) -> None:
    """Calibrate the probabilities by temperature scaling.

    \b
    Fits one temperature T by minimising the negative log-likelihood on the run's validation
    images, folds 1/T into the softmax layer (a plain Keras file, the same predicted class for
    every image) and writes calibrated.keras and calibration.json beside the model. Prints T and
    the expected calibration error (ECE, 15 bins) before and after, on the test split (or, without
    one, on a held-out half of the validation split).

    \b
    Examples:
      imgai calibrate                                  # the latest run's best model
      imgai calibrate --run flowers --target-accuracy 0.95
    """
    from imgai.calibrate import calibrate_model, check_run_data, check_target_accuracy, output_paths

    path = _resolve_model(model_path, run, runs_dir)
    check_target_accuracy(target_accuracy)
    output_paths(path, output)  # usage mistakes exit 2 before TensorFlow loads
    check_run_data(path)
    _announce_model(path)
    _load_keras()
    calibrate_model(path, target_accuracy=target_accuracy, output=output, log=_echo)


# --------------------------------------------------------------------------------- predict


def _read_stdin_paths() -> list[str]:
    return [line.strip() for line in sys.stdin if line.strip()]


@cli.command(context_settings=CONTEXT, short_help="Class names and probabilities for images and folders.")
@click.argument("paths", nargs=-1, required=True, metavar="IMAGE_FOLDER_OR_GLOB...")
@model_options("Use", artifacts=True)
@click.option(
    "-k",
    "--top-k",
    default=None,
    type=click.IntRange(min=1),
    help=f"How many classes to show per image ({SCHEMA_DEFAULT.format(key='infer.top_k')}).",
)
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(PREDICTION_FORMATS),
    help="table for people; json, jsonl (one object per line) or csv for programs "
    f"({SCHEMA_DEFAULT.format(key='infer.format')}).",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Write the predictions to FILE (atomically) instead of the screen.",
)
@click.option(
    "--batch-size",
    default=None,
    type=click.IntRange(min=1),
    help=f"Images per inference batch ({SCHEMA_DEFAULT.format(key='infer.batch_size')}).",
)
@click.option(
    "--min-confidence",
    default=None,
    type=float,
    metavar="P",
    help="Answer infer.unknown_label ('unknown') when the top probability is below P, between 0 "
    "and 1; the top-k is still shown (default: infer.min_confidence, else the threshold stored "
    "in a calibrated model, else always answer).",
)
@click.option(
    "--unknown-label",
    default=None,
    metavar="TEXT",
    help="The answer below --min-confidence (default: infer.unknown_label, 'unknown').",
)
@tta_option
@_handle_errors
def predict(
    paths, model_path, run, runs_dir, top_k, fmt, output, batch_size, min_confidence, unknown_label, tta
) -> None:
    """Predict class names and probabilities for images, folders (recursively) or glob patterns.

    \b
    Examples:
      imgai predict cat.jpg
      imgai predict photos/ --format csv -o predictions.csv
      imgai predict 'photos/**/*.jpg' --format jsonl      # quoted patterns are expanded by imgai
      find photos -name '*.png' | imgai predict - --top-k 1
      imgai predict photos/ --min-confidence 0.8   # 'unknown' below 80 % confidence
    Images are read and predicted a few batches at a time, so any number of files works. A file
    that cannot be read gets an error row; the others are still predicted, and the exit code is
    1 if any file failed.
    """
    from pathlib import Path

    from imgai.artifacts import is_artifact, load_any_model
    from imgai.predict import abstain_rule, ignored_note, iter_prediction_rows, write_rows
    from imgai.runs import atomic_path
    from imgai.tta import with_tta

    inputs: list[str] = []
    for item in paths:
        inputs.extend(_read_stdin_paths() if item == "-" else [item])
    if output is not None and not Path(output).parent.resolve().is_dir():
        raise ImgaiError(f"cannot write '{output}': folder '{Path(output).parent}' does not exist")
    path = _resolve_model(model_path, run, runs_dir)
    _single_device_note(path, "predict")
    from imgai.gate import check_open_unit

    check_open_unit(min_confidence, "infer.min_confidence")
    given = {"min_confidence": min_confidence, "unknown_label": unknown_label}
    given = {key: value for key, value in given.items() if value is not None}
    infer = _run_settings(path, ("infer",), infer=given).infer  # a threshold outside (0, 1): exit 2
    top_k = infer.top_k if top_k is None else top_k
    fmt = infer.format if fmt is None else fmt
    if not is_artifact(path):  # ONNX / LiteRT files run without TensorFlow or Keras
        _load_keras()
    model, info = load_any_model(path)
    _announce_model(path)
    abstain = abstain_rule(infer, info)
    if abstain is not None and infer.min_confidence is None:  # not asked for: say where it comes from
        click.echo(
            f"Answering '{printable(abstain.label)}' below confidence {abstain.min_confidence:g} "
            "(the threshold stored in the model; --min-confidence sets another).",
            err=True,
        )
    model = with_tta(model, infer.tta if tta is None else tta, info.interpolation)
    ignored: list[str] = []
    rows = iter_prediction_rows(model, info, inputs, batch_size or infer.batch_size, infer.workers, ignored)
    if output is None:
        count, failed = write_rows(rows, list(info.class_names), top_k, fmt, sys.stdout, abstain)
    else:
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
            count, failed = write_rows(rows, list(info.class_names), top_k, fmt, fh, abstain)
        click.echo(f"Wrote {count} prediction(s) to {output}.", err=True)
    note = ignored_note(ignored)
    if note:
        click.echo(note, err=True)
    if failed:
        click.echo(f"{failed} of {count} file(s) could not be predicted.", err=True)
        sys.exit(1)


# --------------------------------------------------------------------------------- explain


@cli.command(
    context_settings=CONTEXT, short_help="Grad-CAM heat map: what part of an image drove the answer."
)
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@model_options("Use")
@click.option(
    "--class",
    "class_name",
    default=None,
    metavar="NAME",
    help="Explain this class instead of the predicted one.",
)
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="PNG to write (one IMAGE only; default: IMAGE-NAME_gradcam.png in --output-dir).",
)
@click.option(
    "--output-dir",
    default=None,
    metavar="DIR",
    help="Folder for the PNGs when --output is not given "
    f"({SCHEMA_DEFAULT.format(key='explain.output_dir')}).",
)
@click.option(
    "--layer",
    default=None,
    metavar="NAME",
    help="Feature-map layer to read (default: explain.layer; empty: the last one with a 4-D output).",
)
@_handle_errors
def explain(images, model_path, run, runs_dir, class_name, output, output_dir, layer) -> None:
    """Show which part of an image drove the prediction: a Grad-CAM heat map over the image.

    \b
    Examples:
      imgai explain photo.jpg                       # writes photo_gradcam.png
      imgai explain photo.jpg --class tulips -o why-tulips.png
      imgai explain a.jpg b.jpg --output-dir explanations/
    The PNG shows the photo, the heat over it and the heat alone with its colour scale: red
    regions raised the class's score most; where the photo is left uncoloured they mattered
    little. On a model whose last feature map is coarse (a few cells a side, e.g. 32-px images)
    a finer earlier layer is read and the output says so; --layer picks one. TensorFlow and JAX.
    """
    from pathlib import Path

    if output is not None and len(images) > 1:
        raise ImgaiError("--output names one file: with several images use --output-dir DIR")
    path = _resolve_model(model_path, run, runs_dir)
    settings = _run_settings(path, ("explain",)).explain
    output_dir = settings.output_dir if output_dir is None else output_dir
    layer = settings.layer if layer is None else layer
    targets = [Path(output)] if output else [Path(output_dir) / f"{Path(i).stem}_gradcam.png" for i in images]
    for target in targets:
        if not target.parent.is_dir():
            raise ImgaiError(f"cannot write '{target}': folder '{target.parent}' does not exist")
    _load_keras()
    from imgai.explain import explain_file
    from imgai.modelfile import load_model
    from imgai.plots import percent

    model, info = load_model(path)
    _announce_model(path)
    for image, target in zip(images, targets):
        result = explain_file(model, info, image, target, class_name=class_name, layer=layer)
        about = (
            ""
            if result["explained"] == result["predicted"]
            else f"; explained '{result['explained']}' ({percent(result['explained_probability'], 1)})"
        )
        predicted = f"{result['predicted']} ({percent(result['probability'], 1)})"
        click.echo(f"{printable(image)}: predicted {predicted}{about} -> {target}")
        if result["note"]:
            _echo(f"Note: {result['note']}")


# ---------------------------------------------------------------------------------- export


@cli.command(
    "export", context_settings=CONTEXT, short_help="Export a model for deployment, each file re-scored."
)
@model_options("Export")
@click.option(
    "-f",
    "--format",
    "formats",
    default="keras,onnx,litert",
    show_default=True,
    metavar="FORMAT[,FORMAT...]",
    help="Any of keras (inference-only .keras), savedmodel, onnx, litert, openvino.",
)
@click.option(
    "-q",
    "--quantize",
    default="none",
    show_default=True,
    type=click.Choice(["none", "float16", "dynamic", "int8", "int8-per-tensor", "auto"]),
    help="LiteRT quantization; auto keeps the smallest that passes the guardrail.",
)
@click.option(
    "--data",
    "data_dir",
    default=None,
    metavar="DIR",
    help="Labelled images for the parity check (default: the run's test split, else validation).",
)
@click.option(
    "-o", "--output-dir", default=None, metavar="DIR", help="New folder (default: RUN/export/N, numbered)."
)
@click.option(
    "--min-agreement", type=float, default=None, metavar="MIN", help="Top-1 agreement with the .keras."
)
@click.option(
    "--max-drop",
    multiple=True,
    metavar="METRIC=DELTA",
    help="Largest allowed drop below the .keras (e.g. accuracy=0.01); repeatable.",
)
@click.option("--min-class-recall", type=float, default=None, metavar="MIN", help="Every class's recall.")
@click.option(
    "--calibration-images",
    default=200,
    show_default=True,
    type=click.IntRange(min=1),
    help="Training images that calibrate int8.",
)
@click.option(
    "--int8-io",
    default="float32",
    show_default=True,
    type=click.Choice(["float32", "uint8", "int8"]),
    help="Input/output tensor type of an int8 LiteRT file.",
)
@click.option(
    "--timing",
    default=1.5,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Time spent measuring each artifact's latency and throughput (0: a quick estimate).",
)
@_handle_errors
def export_cmd(
    model_path, run, runs_dir, formats, quantize, data_dir, output_dir, min_agreement, max_drop,
    min_class_recall, calibration_images, int8_io, timing,
) -> None:  # fmt: skip
    """Export a trained model for deployment, re-scoring every artifact before it ships.

    \b
    Each artifact is loaded by its own runtime and compared with the .keras on the run's test
    split: top-1 agreement, |change in probability|, accuracy, macro-F1, per-class recall, size,
    latency. Guardrail (gate language of 'imgai eval'): by default float artifacts must agree
    on >= 99.5 % of the images and quantized ones may lose at most 0.01 accuracy; flags replace
    the defaults for every artifact. A refused artifact is renamed *.rejected and the exit code is 1.

    \b
    Examples:
      imgai export --run run1 --format onnx,litert
      imgai export --format litert --quantize int8
      imgai export --format litert --quantize auto --max-drop accuracy=0.02
    """
    from imgai.export import Guardrail, export_model, parse_formats
    from imgai.gate import parse_bounds

    guard = Guardrail(min_agreement, parse_bounds(max_drop, "--max-drop"), min_class_recall).validate()
    names = parse_formats(formats)  # usage mistakes exit 2 before TensorFlow loads
    path = _resolve_model(model_path, run, runs_dir)
    _announce_model(path)
    _load_keras()
    report = export_model(
        path,
        names,
        quantize,
        output_dir=output_dir,
        data_dir=data_dir,
        guard=guard,
        calibration_images=calibration_images,
        int8_io=int8_io,
        log=_echo,
        timing_seconds=timing,
    )
    if not report["passed"]:
        sys.exit(1)


# ---------------------------------------------------------------------------------- config


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Show or check configuration files."""


@config.command(
    "show",
    context_settings=CONTEXT,
    short_help="Every setting with its default and help, or a resolved config.",
)
@click.option(
    "-c", "--config", "configs", multiple=True, metavar="FILE", help="YAML config file(s) to resolve."
)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def config_show(configs, overrides) -> None:
    """Print every setting with its default and help, or the resolved config of FILE(s) + overrides.

    \b
    Examples:
      imgai config show                                  # every key, its default and meaning
      imgai config show -c configs/cnn.yaml train.epochs=30   # what a training would use
      imgai config show -c configs/flowers.yaml -c configs/flowers_4gpu.yaml   # merged, later wins
    """
    from imgai.config import describe_schema, dump_config, load_config

    if not configs and not overrides:
        click.echo(describe_schema(), nl=False)
        return
    click.echo(dump_config(load_config(configs, overrides)), nl=False)


@config.command("check", context_settings=CONTEXT, short_help="Validate config files, each on its own.")
@click.argument("args", nargs=-1, required=True, metavar="FILE... [KEY=VALUE]...")
@click.option("--set", "set_overrides", multiple=True, metavar="KEY=VALUE", hidden=True)  # the old spelling
@_handle_errors
def config_check(args, set_overrides) -> None:
    """Validate each config FILE on its own (with the KEY=VALUE overrides applied to each).

    \b
    Prints one line per file: OK, or what is wrong and how to fix it. A data folder that does not
    exist here is a warning, not an error (it may be given at training time, or on another
    machine). Exit 0 if every file is valid, 2 if any is not.
    \b
    Examples:
      imgai config check configs/cnn.yaml
      imgai config check configs/*.yaml data.root=~/flower_photos
      imgai config show -c a.yaml -c b.yaml      # files meant to be merged: show the merge
    """
    from imgai.config import check_config_file

    files = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a] + list(set_overrides)
    if not files:
        raise ImgaiError(
            "config check needs at least one config FILE (e.g. imgai config check configs/cnn.yaml)"
        )
    invalid = 0
    for path in files:
        try:
            warnings = check_config_file(path, overrides)
        except ImgaiError as exc:
            invalid += 1
            click.echo(
                f"Error: {printable(path)}: {printable(exc.worded({**FLAGS, 'config': 'FILE'}))}", err=True
            )
            continue
        click.echo(f"OK: {printable(path)} is a valid imgai config.")
        for warning in warnings:
            click.echo(f"  Warning: {printable(warning)}")
    if invalid:
        sys.exit(2)


# ------------------------------------------------------------------------------------ data


@cli.group(context_settings=CONTEXT, short_help="Sample data, augmentation preview, data check, cache.")
def data() -> None:
    """Sample data, augmentation preview, data check, the decoded-image cache."""


@data.command("sample", context_settings=CONTEXT, short_help="Generate the sample shapes data set (offline).")
@click.argument("out_dir", default="data/shapes", metavar="[OUT_DIR]")
@click.option(
    "--size", default=64, show_default=True, type=click.IntRange(min=32), help="Image side in pixels."
)
@click.option(
    "--per-class",
    default=None,
    type=click.IntRange(min=1),
    help="Training images per class (val and test get a quarter each).",
)
@click.option(
    "--seed", default=0, show_default=True, help="Random seed; the same seed gives the same images."
)
@_handle_errors
def data_sample(out_dir: str, size: int, per_class: int | None, seed: int) -> None:
    """Generate the sample shapes data set (offline, deterministic) into OUT_DIR.

    \b
    Examples:
      imgai data sample                          # data/shapes, as shipped: 64 px, 1,200 images
      imgai data sample shapes32 --size 32 --per-class 50 --seed 1
    """
    from pathlib import Path

    from imgai.sample_data import DEFAULT_SPLITS, make_shapes_dataset

    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ImgaiError(f"'{out_dir}' is a file, not a folder: choose a new folder for the sample data")
    if Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise ImgaiError(f"'{out_dir}' exists and is not empty: choose another folder or remove it first")
    splits = (
        DEFAULT_SPLITS
        if per_class is None
        else {"train": per_class, "val": max(1, per_class // 4), "test": max(1, per_class // 4)}
    )
    written = make_shapes_dataset(out_dir, splits, size=size, seed=seed)
    counts = ", ".join(f"{k} {v}" for k, v in written.items())
    click.echo(f"Wrote {sum(written.values())} images to {out_dir} ({counts}).")


@data.command(
    "preview",
    context_settings=CONTEXT,
    short_help="PNG grid of augmented training images: what the model sees.",
)
@click.option(
    "-c",
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="YAML config file; repeat to merge several, later files win.",
)
@click.option(
    "-o",
    "--output",
    default="augment_preview.png",
    show_default=True,
    metavar="PNG",
    help="Where to write the grid.",
)
@click.option(
    "-n",
    "--count",
    default=16,
    show_default=True,
    type=click.IntRange(min=1, max=256),
    help="How many training images to show.",
)
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def data_preview(configs: tuple[str, ...], output: str, count: int, overrides: tuple[str, ...]) -> None:
    """Write a PNG of training images, each beside its augmented version: what the model sees.

    \b
    Uses the config's data and augment sections, e.g.
      imgai data preview -c configs/flowers_scratch.yaml augment.rotation=0.1 -o grid.png
    Images are a seeded random pick from the training split at data.image_size, augmented as one
    batch with the training settings. An image blended by MixUp / CutMix is captioned with the
    label it trains with (both classes and their shares). With no augmentation configured the
    images are shown alone.
    """
    from imgai.config import load_config

    config = load_config(configs, overrides)
    _load_keras()
    from imgai.augment import preview

    preview(config, output, count=count, log=_echo)


@data.command("check", context_settings=CONTEXT, short_help="Find what would silently spoil training.")
@click.argument("args", nargs=-1, metavar="[DIR] [KEY=VALUE]...")
@click.option(
    "-c",
    "--config",
    "configs",
    multiple=True,
    metavar="FILE",
    help="YAML config file whose data: section says what to check (as training would read it).",
)
@click.option(
    "-o",
    "--output-dir",
    default=None,
    metavar="DIR",
    help="New or empty folder for the report (default: checks/checkN, never overwritten).",
)
@click.option(
    "--fail-on",
    default=None,
    metavar="KINDS",
    help="Exit 1 if any of these comma-separated kinds is found: corrupt, ignored, empty-class, "
    "missing-class, outliers, duplicates, conflicts, leakage, label-issues.",
)
@click.option(
    "--label-issues",
    is_flag=True,
    help="Also find likely label errors: K-fold cross-validated training with the config, ranked by cleanlab.",
)
@click.option(
    "--folds", default=5, show_default=True, type=click.IntRange(min=2), help="K of --label-issues."
)
@click.option(
    "--epochs",
    default=None,
    type=click.IntRange(min=1),
    help="Epochs per fold for --label-issues (default: train.epochs).",
)
@_handle_errors
def data_check(args, configs, output_dir, fail_on, label_issues, folds, epochs) -> None:
    """Find what would silently spoil training: unreadable and ignored files, empty classes,
    outliers, exact and near duplicates, label conflicts, leakage between splits.

    \b
    DIR is a data folder (one sub-folder per class, or train/ val/ test/), or use -c CONFIG:
      imgai data check ~/flower_photos data.validation_split=0.2
      imgai data check -c configs/flowers.yaml --fail-on leakage,conflicts,corrupt
      imgai data check ~/flower_photos --label-issues --folds 5 --epochs 3
    \b
    Writes check.json, duplicates.csv and PNG galleries into the report folder. With --fail-on:
    one PASSED/FAILED line per kind; exit 1 if any is found, 2 for a usage error.
    """
    from imgai.check import format_summary, gate, parse_fail_on, run_check
    from imgai.config import load_config

    folders = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    if len(folders) > 1:
        raise ImgaiError(f"data check takes one data folder, got {len(folders)}: {' '.join(folders)}")
    if folders:
        overrides.insert(0, f"data.root={folders[0]}")
    if not folders and not configs and not any(o.startswith("data.") for o in overrides):
        raise ImgaiError("no data to check: pass a data folder (imgai data check DIR) or -c CONFIG")
    kinds = parse_fail_on(fail_on)
    if "label-issues" in kinds and not label_issues:
        raise ImgaiError("--fail-on label-issues needs --label-issues")
    config = load_config(configs, overrides)
    options = {"folds": folds, "epochs": epochs} if label_issues else None
    if label_issues:
        _load_keras()
    report = run_check(config, output_dir, log=_echo, label_issues=options)
    click.echo(format_summary(report))
    if kinds:
        passed, text = gate(report, kinds)
        click.echo(_paint(text))
        if not passed:
            sys.exit(1)


@data.group("cache", context_settings=CONTEXT)
def data_cache() -> None:
    """List or clear the disk cache of decoded images (data.cache_dir)."""


def _cache_dir(cache_dir: str | None):
    from pathlib import Path

    from imgai.config import DataConfig

    return Path(cache_dir or DataConfig().cache_dir).expanduser()


@data_cache.command(
    "list", context_settings=CONTEXT, short_help="Each cached data set, its size and last use."
)
@click.option(
    "--cache-dir", default=None, metavar="DIR", help="Cache folder (default: data.cache_dir's default)."
)
@_handle_errors
def data_cache_list(cache_dir: str | None) -> None:
    """Each cached data set with its size and when it was last used, oldest first."""
    from imgai.cachedir import _size, list_caches

    folder = _cache_dir(cache_dir)
    entries = list_caches(folder)
    for entry in entries:
        click.echo(printable(entry.describe()))
    total = sum(e.bytes for e in entries)
    click.echo(f"{len(entries)} cache(s), {_size(total)} in {folder}")


@data_cache.command("clear", context_settings=CONTEXT, short_help="Remove caches by KEY, or all of them.")
@click.argument("keys", nargs=-1, metavar="[KEY]...")
@click.option(
    "--cache-dir", default=None, metavar="DIR", help="Cache folder (default: data.cache_dir's default)."
)
@_handle_errors
def data_cache_clear(keys: tuple[str, ...], cache_dir: str | None) -> None:
    """Remove the caches named KEY (as 'imgai data cache list' shows them), or all of them."""
    from imgai.cachedir import _size, clear_caches, list_caches

    folder = _cache_dir(cache_dir)
    unknown = sorted(set(keys) - {e.folder.name for e in list_caches(folder)})
    if unknown:
        raise ImgaiError(f"no cache named {', '.join(unknown)} in '{folder}': see imgai data cache list")
    removed = clear_caches(folder, keys)
    click.echo(f"Removed {len(removed)} cache(s), {_size(sum(e.bytes for e in removed))}, from {folder}.")


def main() -> None:
    cli(prog_name="imgai")


if __name__ == "__main__":
    main()
