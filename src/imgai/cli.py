"""The ``imgai`` command line: a thin shell over the library's functions.

Each command parses its arguments, calls one library function, and turns
:class:`~imgai.errors.ImgaiError` into one line on stderr and exit code 2. Nothing heavy is
imported at module level, so ``imgai --help`` never loads TensorFlow.
"""

from __future__ import annotations

import functools
import sys

import click

from imgai import __version__
from imgai.errors import ImgaiError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _handle_errors(fn):
    """User mistakes -> one line and their exit code; Ctrl-C -> exit 130; no tracebacks for either."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ImgaiError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper


def _echo(text: str) -> None:
    click.echo(text)


def _load_keras() -> None:
    from imgai.quiet import import_keras

    import_keras()


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="imgai")
@click.option("--verbose", is_flag=True, help="Show framework logs (TensorFlow/JAX) that imgai hides by default.")
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
    """
    from imgai.quiet import silence_frameworks

    silence_frameworks(verbose)


# ----------------------------------------------------------------------------------- train


@cli.command(context_settings=CONTEXT)
@click.option(
    "-c", "--config", "configs", multiple=True, metavar="FILE",
    help="YAML config file; repeat to merge several, later files win.",
)
@click.option("--name", default=None, help="Run folder name under output.dir (default: run1, run2, ...). Never overwritten.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def train(configs: tuple[str, ...], name: str | None, overrides: tuple[str, ...]) -> None:
    """Train a model; writes runs/<name>/ with best.keras, last.keras, history.csv, config.yaml.

    \b
    Overrides follow the options as key.sub=value, parsed as YAML:
      imgai train -c configs/cnn.yaml train.epochs=20 data.image_size=[128,128]
      imgai train -c configs/flowers.yaml data.root=~/flower_photos --name flowers
    """
    from imgai.config import load_config

    config = load_config(configs, overrides)  # config errors come before any heavy import
    _load_keras()
    from imgai.train import train as run_training

    run_training(config, name=name, log=_echo)


# ------------------------------------------------------------------------------------ eval


@cli.command("eval", context_settings=CONTEXT)
@click.option("--model", "model_path", default=None, metavar="PATH", help="A .keras file or run folder (default: latest run's best.keras).")
@click.option("--run", default=None, metavar="NAME", help="Use this run's best.keras (a name under --runs-dir, or a folder).")
@click.option("--data", "data_dir", default=None, metavar="DIR", help="Labelled images to score: one sub-folder per class (default: the run's test split, else its validation split).")
@click.option("--runs-dir", default="runs", show_default=True, help="Where runs live.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Images per inference batch.")
@_handle_errors
def eval_cmd(model_path: str | None, run: str | None, data_dir: str | None, runs_dir: str, batch_size: int) -> None:
    """Score a trained model: loss, accuracy, per-class accuracy; writes metrics.json beside the model.

    \b
    Examples:
      imgai eval                                   # latest run, its test (or val) split
      imgai eval --run flowers --data ~/holdout    # another folder of class sub-folders
    """
    from imgai.evaluate import evaluate
    from imgai.runs import resolve_model_path

    path = resolve_model_path(model_path, run, runs_dir)
    _load_keras()
    evaluate(path, data_dir, batch_size=batch_size, log=_echo)


# --------------------------------------------------------------------------------- predict


@cli.command(context_settings=CONTEXT)
@click.argument("paths", nargs=-1, required=True, metavar="IMAGE_OR_FOLDER...")
@click.option("--model", "model_path", default=None, metavar="PATH", help="A .keras file or run folder (default: latest run's best.keras).")
@click.option("--run", default=None, metavar="NAME", help="Use this run's best.keras.")
@click.option("--runs-dir", default="runs", show_default=True, help="Where runs live.")
@click.option("-k", "--top-k", default=3, show_default=True, type=click.IntRange(min=1), help="How many classes to show per image.")
@click.option("--format", "fmt", default="table", show_default=True, type=click.Choice(["table", "json", "csv"]), help="table for people; json or csv for programs.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1), help="Images per inference batch.")
@_handle_errors
def predict(paths, model_path, run, runs_dir, top_k, fmt, batch_size) -> None:
    """Predict class names and probabilities for images, or every file in folders.

    \b
    Examples:
      imgai predict cat.jpg
      imgai predict photos/ --format csv > predictions.csv
    A file that cannot be read gets an error line; the others are still predicted, and the
    exit code is 1 if any file failed.
    """
    from imgai.models import load_model
    from imgai.predict import format_rows, predict_files
    from imgai.runs import resolve_model_path

    path = resolve_model_path(model_path, run, runs_dir)
    _load_keras()
    model, meta = load_model(path)
    rows = predict_files(model, meta, list(paths), batch_size=batch_size)
    click.echo(format_rows(rows, meta["class_names"], top_k, fmt), nl=False)
    failed = [r for r in rows if r.error]
    if failed:
        click.echo(f"{len(failed)} of {len(rows)} file(s) could not be predicted.", err=True)
        sys.exit(1)


# ---------------------------------------------------------------------------------- config


@cli.group(context_settings=CONTEXT)
def config() -> None:
    """Show or check configuration files."""


@config.command("show", context_settings=CONTEXT)
@click.option("-c", "--config", "configs", multiple=True, metavar="FILE", help="YAML config file(s) to resolve.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def config_show(configs, overrides) -> None:
    """Print every setting with its default and help, or the resolved config of FILE(s) + overrides."""
    from imgai.config import describe_schema, dump_config, load_config

    if not configs and not overrides:
        click.echo(describe_schema(), nl=False)
        return
    click.echo(dump_config(load_config(configs, overrides)), nl=False)


@config.command("check", context_settings=CONTEXT)
@click.argument("files", nargs=-1, required=True, metavar="FILE...")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override to apply before checking.")
@_handle_errors
def config_check(files, overrides) -> None:
    """Validate config FILE(s): exit 0 if valid, else one line naming the problem and exit 2."""
    from imgai.config import load_config

    load_config(files, overrides)
    click.echo(f"OK: {', '.join(files)} is a valid imgai config.")


# ------------------------------------------------------------------------------------ data


@cli.group(context_settings=CONTEXT)
def data() -> None:
    """Data helpers."""


@data.command("sample", context_settings=CONTEXT)
@click.argument("out_dir", default="data/shapes", metavar="[OUT_DIR]")
@click.option("--size", default=64, show_default=True, type=click.IntRange(min=32), help="Image side in pixels.")
@click.option("--per-class", default=None, type=click.IntRange(min=1), help="Training images per class (val and test get a quarter each).")
@click.option("--seed", default=0, show_default=True, help="Random seed; the same seed gives the same images.")
@_handle_errors
def data_sample(out_dir: str, size: int, per_class: int | None, seed: int) -> None:
    """Generate the sample shapes data set (offline, deterministic) into OUT_DIR."""
    from pathlib import Path

    from imgai.sample_data import DEFAULT_SPLITS, make_shapes_dataset

    if Path(out_dir).exists() and any(Path(out_dir).iterdir()):
        raise ImgaiError(f"'{out_dir}' exists and is not empty: choose another folder or remove it first")
    splits = DEFAULT_SPLITS if per_class is None else {"train": per_class, "val": max(1, per_class // 4), "test": max(1, per_class // 4)}
    written = make_shapes_dataset(out_dir, splits, size=size, seed=seed)
    click.echo(f"Wrote {sum(written.values())} images to {out_dir} ({', '.join(f'{k} {v}' for k, v in written.items())}).")


@data.command("preview", context_settings=CONTEXT)
@click.option(
    "-c", "--config", "configs", multiple=True, metavar="FILE",
    help="YAML config file; repeat to merge several, later files win.",
)
@click.option("-o", "--output", default="augment_preview.png", show_default=True, metavar="PNG", help="Where to write the grid.")
@click.option("-n", "--count", default=16, show_default=True, type=click.IntRange(min=1, max=256), help="How many training images to show.")
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@_handle_errors
def data_preview(configs: tuple[str, ...], output: str, count: int, overrides: tuple[str, ...]) -> None:
    """Write a PNG grid of augmented training images with their labels: what the model sees.

    \b
    Uses the config's data and augment sections, e.g.
      imgai data preview -c configs/flowers_scratch.yaml augment.rotation=0.1 -o grid.png
    Labels mixed by MixUp / CutMix show both classes with their shares.
    """
    from imgai.config import load_config

    config = load_config(configs, overrides)
    _load_keras()
    from imgai.augment import preview

    preview(config, output, count=count, log=_echo)


def main() -> None:
    cli(prog_name="imgai")


if __name__ == "__main__":
    main()
