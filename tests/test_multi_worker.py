"""Two MultiWorkerMirroredStrategy workers on 127.0.0.1 train like one process, and resume.

Each worker is a fresh process (TF_CONFIG must be set before TensorFlow starts). Every wait has a
timeout; a process that outlives it gets SIGABRT, which makes Python's faulthandler
(PYTHONFAULTHANDLER=1) print every thread's stack into the output shown by the failing assert.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 420

# Trains through training.fit, the path `affinegan-tf fit` takes, with a small plain SGD step
# instead of Adam. Adam turns gradients of pure rounding noise (conv biases before instance norm)
# into full-size steps of random sign; large SGD steps make this GAN's ten steps chaotic (measured:
# at 1e-3 the runs drift 5e-3 apart though their losses agree to 1e-3, at 1e-5 they stay within
# 1.4e-6 for an update of 1.3e-3). Either would hide what is compared: the gradient aggregation.
WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    data_dir, run_dir = sys.argv[1], sys.argv[2]
    steps, batch_size = int(sys.argv[3]), int(sys.argv[4])
    import keras
    from affinegan_tf import training
    from affinegan_tf.recipes import resolve_config

    build_model = training.build_model

    def build_with_sgd(run_config, total_steps):
        model = build_model(run_config, total_steps)
        model.compile(keras.optimizers.SGD(1e-5), keras.optimizers.SGD(1e-5))
        return model

    training.build_model = build_with_sgd
    config = resolve_config(
        data_dir,
        preset_name="tiny",
        model_overrides={"noise_std": 0.0, "dropout": 0.0},
        train_overrides={"steps": steps, "batch_size": batch_size, "checkpoint_every": 5},
    )
    result = training.fit(config, run_dir)
    print("FINISHED", result.step, flush=True)
    """
)

COMPARE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from affinegan_tf.checkpoints import load_model
    one, _ = load_model(sys.argv[1])
    two, _ = load_model(sys.argv[2])
    start, _ = load_model(sys.argv[1], checkpoint=sys.argv[3])
    print(json.dumps({
        "difference": max(float(np.abs(a.numpy() - b.numpy()).max())
                          for a, b in zip(one.variables, two.variables, strict=True)),
        "update": max(float(np.abs(a.numpy() - b.numpy()).max())
                      for a, b in zip(one.variables, start.variables, strict=True)),
    }))
    """
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def environment(tf_config: dict | None = None, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONFAULTHANDLER"] = "1"
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    env.update(extra)
    return env


def start_workers(command: list[str], log_dir: Path, tag: str, **extra) -> list:
    """Starts worker 0 and worker 1 of a two-worker cluster; returns (process, log path) pairs."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    for index in range(2):
        log = log_dir / f"{tag}-worker{index}.log"
        tf_config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        with open(log, "w") as handle:
            process = subprocess.Popen(
                command,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=environment(tf_config, **extra),
            )
        workers.append((process, log))
    return workers


def wait(process: subprocess.Popen, log: Path, seconds: float = WAIT_SECONDS) -> int:
    """The exit code; on timeout, the stacks (SIGABRT -> faulthandler) and a failed test."""
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        try:
            process.wait(timeout=30)
        finally:
            process.kill()
        pytest.fail(f"{log.name} still running after {seconds} s; its stacks:\n{tail(log)}")


def tail(log: Path, characters: int = 4000) -> str:
    return log.read_text(errors="replace")[-characters:]


def stop_all(workers) -> None:
    for process, _ in workers:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def wait_all_succeed(workers) -> None:
    """Waits for every worker (killing any left on the way out); each must exit 0."""
    try:
        codes = [wait(process, log) for process, log in workers]
    finally:
        stop_all(workers)
    for code, (_, log) in zip(codes, workers, strict=True):
        assert code == 0, tail(log)


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory) -> Path:
    from affinegan_tf.toy import write_toy_dataset

    root = tmp_path_factory.mktemp("toy4")
    write_toy_dataset(root, num_videos=4, size=64, expression="smile", seed=0)
    return root


@pytest.mark.slow  # three TensorFlow processes: ~1.5 min idle, 8.5 min on the shared 2 cores
def test_two_workers_train_like_one_process_on_the_same_global_batch(small_toy, tmp_path):
    steps, batch_size = 10, 2
    script = [sys.executable, "-c", WORKER_SCRIPT, str(small_toy)]
    workers = start_workers(
        [*script, str(tmp_path / "two"), str(steps), str(batch_size)], tmp_path, "equal"
    )
    single_log = tmp_path / "single.log"
    wait_all_succeed(workers)
    for _, log in workers:
        assert f"FINISHED {steps}" in log.read_text()
    with open(single_log, "w") as handle:
        single = subprocess.Popen(
            [*script, str(tmp_path / "one"), str(steps), str(batch_size)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=environment(),
        )
    assert wait(single, single_log) == 0, tail(single_log)

    # Only the chief wrote the run folder; the other worker's scratch folder is gone.
    chief_log = workers[0][1].read_text()
    assert "2 replica(s) on 2 workers (this is worker 0)" in chief_log
    run = tmp_path / "two"
    assert sorted(p.name for p in (run / "checkpoints").glob("*.index")) == [
        "ckpt-10.index",
        "ckpt-5.index",
    ]
    assert (run / "config.json").is_file() and (run / "intensity_range.json").is_file()
    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step_0000005.gif",
        "step_0000010.gif",
    ]
    scratch = workers[1][1].read_text().split("checkpoint ", 1)[1].split("/checkpoints/")[0]
    assert "affinegan-worker1-" in scratch and not Path(scratch).exists()

    compared = subprocess.run(
        [
            sys.executable,
            "-c",
            COMPARE_SCRIPT,
            str(tmp_path / "one"),
            str(run),
            str(tmp_path / "one" / "checkpoints" / "ckpt-5"),
        ],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=300,
    )
    assert compared.returncode == 0, compared.stderr[-3000:]
    figures = json.loads(compared.stdout.strip().splitlines()[-1])
    assert figures["update"] > 1e-4  # the last five steps really moved the weights
    # The same ten updates up to float32 reduction-order noise.
    assert figures["difference"] < 2e-5, figures


@pytest.mark.slow
def test_a_lost_worker_stops_the_other_and_a_restart_resumes(small_toy, tmp_path):
    run = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "affinegan_tf",
        "fit",
        "--data",
        str(small_toy),
        "--out",
        str(run),
        "--preset",
        "tiny",
        "--steps",
        "40",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "5",
    ]
    workers = start_workers(command, tmp_path, "first", AFFINEGAN_COLLECTIVE_TIMEOUT="30")
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not list((run / "checkpoints").glob("ckpt-10.index")):
            assert time.monotonic() < deadline, tail(workers[0][1])
            assert all(process.poll() is None for process, _ in workers), tail(workers[0][1])
            time.sleep(0.5)
        workers[1][0].kill()  # worker 1 dies mid-run
        # The survivor does not wait forever: it stops with a message saying what to do.
        code = wait(*workers[0], seconds=240)
        survivor = workers[0][1].read_text()
        assert code != 0, tail(workers[0][1])
        assert "another worker stopped answering" in survivor, tail(workers[0][1])
        assert "Restart every worker with the same command" in survivor
    finally:
        stop_all(workers)
    saved = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("*.index"))
    assert saved and saved[-1] < 40

    workers = start_workers(command, tmp_path, "again", AFFINEGAN_COLLECTIVE_TIMEOUT="30")
    wait_all_succeed(workers)
    chief = workers[0][1].read_text()
    assert f"Resuming {run} at step {saved[-1]}/40" in chief, tail(workers[0][1])
    assert "Done: step 40/40" in chief
    final = sorted(int(p.stem.split("-")[1]) for p in (run / "checkpoints").glob("*.index"))
    assert final[-1] == 40
    assert np.all(np.diff(final) > 0)
