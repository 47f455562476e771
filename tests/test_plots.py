"""The PNG plots: percentages that never read 100 % for a wrong answer, whole-number epochs, the
learning-rate panel, and a confusion matrix that shows small mistakes and empty classes."""

import numpy as np
import pytest

from imgai.plots import (
    confusion_matrix_figure,
    percent,
    plot_training_curves,
    read_history,
    training_curves_figure,
)


def test_percent_never_rounds_a_share_below_one_up_to_100():
    assert percent(0.997) == "99.7%" and percent(0.99985) == ">99.9%" and percent(1.0) == "100%"
    assert percent(0.5) == "50%" and percent(0.874, 1) == "87.4%" and percent(0.9996, 1) == "99.96%"
    assert percent(0.0) == "0%" and percent(0.004) == "0.4%" and percent(0.00004) == "<0.1%"
    assert percent(None) == percent(float("nan")) == "n/a"
    for share in np.concatenate([1 - np.logspace(-12, -1, 200), np.logspace(-12, -1, 200)]):
        for decimals in (0, 1, 2):
            text = percent(float(share), decimals)
            assert text.rstrip("%").lstrip("<>") not in ("100", "100.0", "100.00", "0", "0.0", "0.00"), text


def _history(tmp_path, rows: str):
    path = tmp_path / "run7" / "history.csv"
    path.parent.mkdir()
    path.write_text("epoch,accuracy,learning_rate,loss,val_accuracy,val_loss\n" + rows)
    return path


def _visible_ticks(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


def test_training_curves_have_whole_epochs_the_learning_rate_and_the_run_name(tmp_path):
    path = _history(tmp_path, "1,0.5,0.001,1.0,0.4,1.1\n2,0.7,0.0005,0.8,0.6,0.9\n")
    fig = training_curves_figure(read_history(path), "val_accuracy", "run7")
    loss, accuracy, rate = fig.axes
    for ax in (loss, accuracy, rate):
        assert _visible_ticks(ax) == [1, 2]  # not 1.0, 1.2, 1.4, ...
        assert [line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--"] == [2]  # best epoch
    assert list(rate.lines[0].get_ydata()) == [0.001, 0.0005]
    assert "run7" in fig.get_suptitle()
    # written as a file, the run name taken from the history's folder
    out = plot_training_curves(path, tmp_path / "curves.png")
    assert out.stat().st_size > 10_000


def test_training_curves_without_a_learning_rate_column(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,accuracy,loss\n" + "".join(f"{e},0.{e},1.{9 - e}\n" for e in range(1, 10)))
    fig = training_curves_figure(read_history(path), "val_accuracy")
    assert len(fig.axes) == 2 and all(t == int(t) for t in _visible_ticks(fig.axes[0]))
    with pytest.raises(ValueError, match="no epochs"):
        training_curves_figure({"epoch": []})


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_confusion_matrix_tints_small_mistakes_and_marks_an_empty_class():
    counts = [[50, 2, 0], [0, 0, 0], [1, 3, 46]]
    fig = confusion_matrix_figure(
        counts, ["cat", "dog", "fox"], normalize=True, model="r/best.keras", data="d/test"
    )
    ax = fig.axes[0]
    cells = ax.images[0].get_array()
    assert cells[0, 1, :3].min() < 0.9, "2 mistakes beside 50 must be visibly coloured"
    assert cells[0, 2, :3].min() == 1.0, "a cell without mistakes stays white"
    assert (cells[1, :, :3] < 1).all(), "the empty class's row is greyed"
    texts = _texts(ax)
    assert texts.count("n/a") == 4  # three cells and its recall
    assert "96.2%" in texts and "92.0%" in texts  # recall column (50/52, 46/50)
    assert "52" in texts and "images" in texts and "recall" in texts
    assert "r/best.keras on d/test" in ax.get_title()
    counts_fig = confusion_matrix_figure(counts, ["cat", "dog", "fox"])
    assert "image counts" in counts_fig.axes[0].get_title() and "n/a" in _texts(counts_fig.axes[0])
