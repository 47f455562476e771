from pathlib import Path

import pytest
import yaml

from imgai.config import (
    Config,
    apply_overrides,
    build_config,
    defaults,
    describe_schema,
    dump_config,
    load_config,
    parse_override,
)
from imgai.errors import ImgaiError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_are_the_classic_pipeline():
    cfg = defaults()
    assert cfg.data.image_size == (224, 224)
    assert cfg.data.batch_size == 32
    assert cfg.data.color_mode == "rgb"
    assert cfg.model.name == "cnn"
    assert cfg.model.filters == [32, 64, 128]
    assert cfg.model.kernel_size == 3
    assert cfg.model.dense_units == 512
    assert cfg.model.dropout == 0.5
    assert cfg.train.optimizer == "adam"
    assert cfg.train.loss == "categorical_crossentropy"
    assert cfg.output.dir == "runs"


def test_files_merge_in_order_later_wins(tmp_path):
    a = write(tmp_path / "a.yaml", "data:\n  root: one\n  batch_size: 8\ntrain:\n  epochs: 3\n")
    b = write(tmp_path / "b.yaml", "data:\n  root: two\ntrain:\n  learning_rate: 0.01\n")
    cfg = load_config([a, b])
    assert cfg.data.root == str(tmp_path / "two")  # read from b.yaml's folder
    assert cfg.data.batch_size == 8  # kept from a: nested sections merge, not replace
    assert cfg.train.epochs == 3
    assert cfg.train.learning_rate == 0.01


def test_overrides_are_parsed_as_yaml_and_win_over_files(tmp_path):
    a = write(tmp_path / "a.yaml", "train:\n  epochs: 3\n")
    cfg = load_config(
        [a], ["train.epochs=7", "data.image_size=[128,96]", "train.learning_rate=3e-4", "data.root=x y"]
    )
    assert cfg.train.epochs == 7
    assert cfg.data.image_size == (128, 96)
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.data.root == "x y"


def test_square_image_size_from_one_number():
    assert load_config([], ["data.image_size=96"]).data.image_size == (96, 96)


def test_parse_override_forms():
    assert parse_override("a.b=1") == (["a", "b"], 1)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=") == (["a"], None)
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ImgaiError, match="key.sub=value"):
            parse_override(bad)


def test_apply_overrides_does_not_mutate_input():
    data = {"train": {"epochs": 1}}
    out = apply_overrides(data, ["train.epochs=2"])
    assert data["train"]["epochs"] == 1 and out["train"]["epochs"] == 2


def test_unknown_key_suggests_the_closest_valid_key():
    with pytest.raises(ImgaiError) as err:
        load_config([], ["train.epoch=3"])
    assert "train.epoch" in str(err.value) and "did you mean train.epochs?" in str(err.value)


def test_unknown_section_suggests_a_section():
    with pytest.raises(ImgaiError, match="did you mean train"):
        load_config([], ["trian.epochs=3"])


def test_unknown_key_without_close_match_lists_valid_keys():
    with pytest.raises(ImgaiError, match="valid keys here"):
        load_config([], ["output.zzzzzz=1"])


@pytest.mark.parametrize(
    "override, path, fragment",
    [
        ("train.epochs=abc", "train.epochs='abc'", "valid integer"),
        ("train.epochs=0", "train.epochs=0", "greater than or equal to 1"),
        ("data.color_mode=cmyk", "data.color_mode='cmyk'", "'rgb' or 'grayscale'"),
        ("data.validation_split=1.5", "data.validation_split=1.5", "less than 1"),
        ("data.image_size=[16,16]", "data.image_size=[16, 16]", "at least 32"),
        ("model.name=vgg99", "model.name='vgg99'", "available: cnn"),
        ("model.dropout=1.0", "model.dropout=1.0", "less than 1"),
        ("train.learning_rate=-1", "train.learning_rate=-1", "greater than 0"),
    ],
)
def test_bad_values_name_path_value_and_what_is_allowed(override, path, fragment):
    with pytest.raises(ImgaiError) as err:
        load_config([], [override])
    message = str(err.value)
    assert path in message and fragment in message
    assert "\n" not in message


def test_section_given_a_scalar_is_an_error():
    with pytest.raises(ImgaiError, match="must be a section"):
        build_config({"train": 5})


def test_empty_section_means_defaults():
    assert build_config({"train": None}).train.epochs == defaults().train.epochs


def test_missing_config_file(tmp_path):
    with pytest.raises(ImgaiError, match="not found"):
        load_config([tmp_path / "nope.yaml"])


def test_invalid_yaml_names_the_line(tmp_path):
    bad = write(tmp_path / "bad.yaml", "data:\n  root: [unclosed\n")
    with pytest.raises(ImgaiError, match="not valid YAML at line"):
        load_config([bad])


def test_top_level_must_be_a_mapping(tmp_path):
    bad = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ImgaiError, match="mapping"):
        load_config([bad])


def test_empty_file_is_all_defaults(tmp_path):
    assert load_config([write(tmp_path / "e.yaml", "")]) == defaults()


def test_dump_round_trips(tmp_path):
    cfg = load_config([], ["data.root=somewhere", "train.epochs=4", "data.image_size=[64,48]"])
    again = build_config(yaml.safe_load(dump_config(cfg)))
    assert again == cfg


def test_describe_schema_lists_every_key_with_help():
    text = describe_schema()
    parsed = yaml.safe_load(text)
    # The schema's own defaults ("empty" where a validator decides), which resolve to defaults().
    assert build_config(parsed).to_dict() == defaults().to_dict()
    assert parsed["train"]["weight_decay"] is None and parsed["output"]["dir"] == "runs"
    assert {"infer", "explain", "eval"} <= set(parsed) and parsed["infer"]["batch_size"] == 32
    assert "# Passes over the training data." in text


def test_empty_means_x_is_resolved_in_the_saved_config():
    assert defaults().train.weight_decay == 0.0
    adamw = load_config([], ["train.optimizer=adamw"])
    assert adamw.train.weight_decay == pytest.approx(0.004)
    assert yaml.safe_load(dump_config(adamw))["train"]["weight_decay"] == pytest.approx(0.004)
    tune = load_config([], ["train.fine_tune_after=2", "train.learning_rate=0.01"]).train
    assert tune.fine_tune_learning_rate == pytest.approx(0.001)
    assert defaults().train.fine_tune_learning_rate is None  # no fine-tune stage: nothing to record
    assert load_config([], ["model.name=resnet50"]).model.freeze is True
    assert load_config([], ["model.name=resnet50", "model.weights=null"]).model.freeze is False
    assert defaults().model.freeze is None  # cnn has no backbone
    # Resolved values load back to the same config (a saved config.yaml reproduces the run).
    assert build_config(yaml.safe_load(dump_config(adamw))) == adamw


def test_config_imports_no_pipeline_module():
    import subprocess
    import sys

    code = (
        "import sys, imgai.config as c; c.load_config([], ['model.name=resnet50', 'eval.fail_under.accuracy=0.9']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('imgai', 'keras', 'tensorflow', 'jax')))"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")  # this checkout, not an installed imgai
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONPATH": src}
    )
    loaded = eval(out.stdout.strip())
    assert not {"imgai.models", "imgai.gate", "imgai.data"} & set(loaded)
    assert not [m for m in loaded if m.split(".")[0] in ("keras", "tensorflow", "jax")]
    # boundedyaml (the YAML loader) and text (escaping for messages) are leaf helpers, no pipeline.
    allowed = {"imgai", "imgai.config", "imgai.errors", "imgai.names", "imgai.boundedyaml", "imgai.text"}
    assert set(loaded) <= allowed, loaded


def test_repo_configs_are_valid():
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("*.yaml")):
        assert isinstance(load_config([path]), Config), path


def test_home_is_expanded_in_path_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    a = write(tmp_path / "a.yaml", "data:\n  root: ~/photos\neval:\n  baseline: ~/m.json\n")
    cfg = load_config([a], ["output.dir=~/runs", "data.cache_dir=~/cache", "explain.output_dir=~/cams"])
    assert cfg.data.root == str(tmp_path / "photos")  # YAML: no shell ever saw it
    assert cfg.eval.baseline == str(tmp_path / "m.json")
    assert (cfg.output.dir, cfg.data.cache_dir) == (str(tmp_path / "runs"), str(tmp_path / "cache"))
    assert cfg.explain.output_dir == str(tmp_path / "cams")
    assert load_config([], ["data.root=~/flower_photos"]).data.root == str(tmp_path / "flower_photos")


def test_relative_paths_in_a_config_file_are_read_from_its_folder(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "configs").mkdir(parents=True)
    (project / "configs" / "photos").mkdir()
    (project / "old").mkdir()
    cfg_file = write(
        project / "configs" / "c.yaml",
        "data:\n  root: photos\n  val_dir: old\n  test_dir: missing\noutput:\n  dir: runs\n",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config([cfg_file], ["data.train_dir=mine"])
    assert cfg.data.root == str(project / "configs" / "photos")
    assert cfg.data.test_dir == str(project / "configs" / "missing")  # the error will name this folder
    assert cfg.data.train_dir == "mine"  # overrides stay relative to the current folder
    assert cfg.output.dir == "runs"  # outputs go where imgai runs
    # A path that exists only from the current folder (configs written before) still works there.
    monkeypatch.chdir(project)
    assert load_config(["configs/c.yaml"]).data.val_dir == "old"
    assert load_config(["configs/c.yaml"]).data.root == "configs/photos"


def test_repo_quickstart_config_finds_the_sample_data_from_any_folder(tmp_path, monkeypatch):
    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)  # as the README's quick start runs it
    assert load_config(["configs/cnn.yaml"]).data.root == "data/shapes"
    monkeypatch.chdir(tmp_path)
    assert Path(load_config([repo / "configs" / "cnn.yaml"]).data.root) == repo / "data" / "shapes"


def test_text_settings_stay_text_in_overrides():
    cfg = load_config([], ["output.name=007", "data.root=yes", "explain.layer=1e3", "model.weights=null"])
    assert (cfg.output.name, cfg.data.root, cfg.explain.layer) == ("007", "yes", "1e3")
    assert cfg.model.weights is None  # null still means empty where empty is allowed
    assert load_config([], ["data.root="]).data.root is None
    assert load_config([], ["train.epochs=7"]).train.epochs == 7  # numbers stay numbers


def test_mistakes_name_the_fix():
    with pytest.raises(ImgaiError, match="did you mean train.epochs"):
        load_config([], ["epochs=3"])  # the key without its section
    with pytest.raises(ImgaiError) as info:
        load_config([], ["configs/cnn.yaml"])  # a config file given without --config
    assert info.value.worded({"config": "--config"}).endswith("pass it as --config configs/cnn.yaml")


def test_config_show_lines_are_wrapped_and_list_allowed_values():
    text = describe_schema()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "optimizer: adam  # Optimizer. One of: adam, adamw, sgd, rmsprop." in text
