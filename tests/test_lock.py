"""One writer per run folder: the lock, its error line, stale locks of dead processes, and a real
second ``train --resume`` on a run that is still training."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_imgai
from imgai.errors import ImgaiError
from imgai.lock import LOCK_FILE, RunLock, check_free, holder

HOLD = (
    "import sys, time; from imgai.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(120)"
)


def env():
    return dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
    )


def test_second_lock_on_a_run_is_refused_naming_the_holder(tmp_path):
    first = RunLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert holder(tmp_path) == os.getpid()
    with pytest.raises(ImgaiError, match=rf"being trained by process {os.getpid()}") as info:
        RunLock(tmp_path).acquire()
    assert info.value.exit_code == 2
    first.release()
    assert holder(tmp_path) is None
    with RunLock(tmp_path):  # free again
        pass


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, env=env(), text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        assert holder(tmp_path) == proc.pid
        with pytest.raises(ImgaiError, match=f"process {proc.pid}"):
            check_free(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(proc.pid)  # the dead pid is still written
    with RunLock(tmp_path):  # no manual cleanup needed
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())


def test_cli_resume_of_a_busy_run_exits_2_naming_the_pid(tmp_path):
    run = tmp_path / "runs" / "busy"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, env=env(), text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        started = time.perf_counter()
        busy = run_imgai("train", "--resume", "runs/busy", "train.epochs=6", cwd=tmp_path)
        assert busy.returncode == 2, busy.stderr
        assert f"being trained by process {proc.pid}" in busy.stderr and "Traceback" not in busy.stderr
        assert time.perf_counter() - started < 20  # refused before the framework loads
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)


@pytest.mark.slow
def test_resume_while_the_run_is_still_training_is_refused(tmp_path):
    from imgai.sample_data import make_shapes_dataset

    make_shapes_dataset(tmp_path / "data", {"train": 30}, shapes=("circle", "square"), size=32, fmt="png")
    (tmp_path / "c.yaml").write_text(
        "data: {root: data, image_size: [32, 32], batch_size: 1}\n"
        "model: {filters: [4], dense_units: 4}\ntrain: {epochs: 4, monitor: loss}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgai", "train", "-c", "c.yaml", "--name", "r"],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    run = tmp_path / "runs" / "r"
    deadline = time.time() + 180
    while not (run / "config.yaml").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()
        time.sleep(0.05)
    second = run_imgai("train", "--resume", "runs/r", "train.epochs=6", cwd=tmp_path)
    out = proc.communicate(timeout=240)[0]
    assert proc.returncode == 0, out
    assert second.returncode == 2 and f"process {proc.pid}" in second.stderr, second.stderr
    rows = [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]
    assert rows == ["1", "2", "3", "4"]  # one writer: no repeated epochs
    assert holder(run) is None
