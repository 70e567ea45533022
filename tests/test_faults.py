"""Fault injection: killed training, damaged checkpoints, a full disk, interrupted data builds.

Every test states what must survive a fault: the run resumes from the last
*complete* checkpoint and ends bit-for-bit where an uninterrupted run ends, a
damaged checkpoint is named and skipped, and nothing half-written is left under
a real name or as a stray temporary file. Training runs go through the real
command line (``python -m leviathan_explore.cli train``); faults are injected by
a small driver script that patches one writer to pause (then SIGKILL) or to raise
``OSError(ENOSPC)``.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from leviathan_explore.cli import main
from leviathan_explore.training import find_latest_checkpoint, list_checkpoints, load_run_model, read_metrics
from leviathan_explore.training.checkpoint import CHECKPOINT_FILES, CheckpointError, verify_checkpoint

pytestmark = pytest.mark.slow

PYTHON = sys.executable
STEPS = 20
# A cpu-tiny dense run: checkpoints and evaluations every 5 steps, a train line every step.
TRAIN_ARGS = ["train", "--arch", "dense", "--preset", "cpu-tiny", "--batch-size", "4", "--seq-len", "32",
              "--eval-every", "5", "--checkpoint-every", "5", "--device", "cpu", "--no-progress", "--seed", "3"]
TEMP_PATTERNS = (".tmp-*", "*.tmp", ".old-*", "*.tmp-*")


def train_argv(data_dir: Path, out: Path, steps: int = STEPS, resume: bool = False) -> list[str]:
    return TRAIN_ARGS + ["--steps", str(steps), "--data", str(data_dir), "--out", str(out)] + (["--resume"] if resume else [])


def leftovers(root: Path) -> list[str]:
    """Temporary files or folders anywhere under ``root`` (what a crash may leave behind)."""
    found = set()
    for pattern in TEMP_PATTERNS:
        found.update(str(p.relative_to(root)) for p in root.rglob(pattern))
    return sorted(found)


def mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_run_model(run_dir).state_dict()


def assert_same_run(run: Path, reference: Path, context: str = "") -> None:
    """Same logged losses at every step, same final weights, every step logged once."""
    got, ref = read_metrics(run, "train"), read_metrics(reference, "train")
    assert [r["step"] for r in got] == [r["step"] for r in ref]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in ref], abs=1e-5)
    got_eval, ref_eval = read_metrics(run, "eval"), read_metrics(reference, "eval")
    assert [r["step"] for r in got_eval] == [r["step"] for r in ref_eval]
    assert [r["val_loss"] for r in got_eval] == pytest.approx([r["val_loss"] for r in ref_eval], abs=1e-5)
    a, b = weights(run), weights(reference)
    assert a.keys() == b.keys()
    differ = {name: float((a[name] - b[name]).abs().max()) for name in a if not torch.allclose(a[name], b[name],
                                                                                              rtol=0, atol=1e-6)}
    assert not differ, f"final weights differ from the uninterrupted run ({context}): {differ}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["finished"] and summary["steps"] == STEPS


def assert_every_checkpoint_verifies(run: Path) -> list[int]:
    steps = []
    for path in list_checkpoints(run / "checkpoints"):
        steps.append(int(verify_checkpoint(path)["step"]))
    return steps


# One thread: results are bit-identical to two threads, and a busy 2-core machine runs it far faster.
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    from leviathan_explore.data import build_corpus

    out = tmp_path_factory.mktemp("data") / "shards"
    build_corpus("python-stdlib", out, max_tokens=60_000, compact=256, progress=False)
    return out


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory) -> tuple[Path, float]:
    """The uninterrupted run, and how long its training took (seconds)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    start = time.perf_counter()
    assert main(train_argv(data_dir, out)) == 0
    return out, time.perf_counter() - start


# ---- a driver that injects one fault into the real command -------------------------------------

DRIVER = textwrap.dedent('''
    """Run `leviathan-explore ARGS` with one fault: FAULT=<where>:<n> pauses forever at the n-th event."""
    import os, sys, time
    from pathlib import Path

    import leviathan_explore.training.checkpoint as checkpoint
    import leviathan_explore.training.runs as runs
    import leviathan_explore.training.trainer as trainer
    from leviathan_explore.cli import main

    where, n = os.environ["FAULT"].split(":")
    n = int(n)
    marker = Path(os.environ["FAULT_MARKER"])
    calls = {"n": 0}

    def nth():
        calls["n"] += 1
        return calls["n"] == n

    def pause():
        marker.write_text(where)
        time.sleep(600)

    if where == "optimizer-step":  # weights updated in memory, step not yet counted or saved
        build = trainer.build_optimizer
        def build_optimizer(*a, **k):
            opt = build(*a, **k)
            step = opt.step
            def paused_step(*sa, **sk):
                out = step(*sa, **sk)
                if nth():
                    pause()
                return out
            opt.step = paused_step
            return opt
        trainer.build_optimizer = build_optimizer
    elif where == "checkpoint-payload":  # a tensor file half written inside the temporary folder
        save_file = checkpoint.save_file
        def partial_save_file(tensors, path, *a, **k):
            save_file(tensors, path, *a, **k)
            if nth():
                size = os.path.getsize(path)
                with open(path, "r+b") as f:
                    f.truncate(size // 2)
                pause()
        checkpoint.save_file = partial_save_file
    elif where == "checkpoint-install":  # every file written, the folder not yet renamed into place
        replace = os.replace
        def paused_replace(src, dst, *a, **k):
            if Path(src).name.startswith(".tmp-step_") and nth():
                pause()
            return replace(src, dst, *a, **k)
        os.replace = paused_replace
    elif where == "eval":  # in the middle of an evaluation
        evaluate = trainer.evaluate
        def paused_evaluate(*a, **k):
            if nth():
                pause()
            return evaluate(*a, **k)
        trainer.evaluate = paused_evaluate
    elif where == "metrics-line":  # a metrics line torn in half
        write = runs.MetricsLog.write
        def torn_write(self, record):
            if nth():
                import json
                line = json.dumps(record)
                self._file.write(line[: len(line) // 2])
                self._file.flush()
                pause()
            return write(self, record)
        runs.MetricsLog.write = torn_write
    elif where == "checkpoint-prune":  # deleting an old checkpoint: one file gone, the rest not yet
        import shutil
        rmtree = shutil.rmtree
        def paused_rmtree(path, *a, **k):
            name = Path(path).name
            if "step_" in name and not name.startswith(".tmp-step_") and nth():
                sorted(Path(path).iterdir())[0].unlink()
                pause()
            return rmtree(path, *a, **k)
        shutil.rmtree = paused_rmtree
    elif where != "none":
        raise SystemExit(f"unknown fault {where}")
    sys.exit(main(sys.argv[1:]))
''')


def start_driver(tmp_path: Path, argv: list[str], fault: str) -> tuple[subprocess.Popen, Path]:
    driver = tmp_path / "fault_driver.py"
    driver.write_text(DRIVER)
    marker = tmp_path / f"marker-{fault.replace(':', '-')}-{time.monotonic_ns()}"
    env = {**ONE_THREAD, "FAULT": fault, "FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([PYTHON, str(driver), *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, marker


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited ({proc.returncode}) before the fault: {err[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError("timed out waiting for the fault")
        time.sleep(0.02)


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


# (fault, the last checkpoint step that must survive). Checkpoints and evaluations come
# every 5 steps, a train line every step; the n-th event of each kind is:
KILL_POINTS = [
    ("optimizer-step:13", 10),     # step 13's weights updated in memory, not yet counted
    ("checkpoint-payload:2", 5),   # step 10's optimizer.safetensors half written in the temporary folder
    ("checkpoint-install:2", 5),   # step 10's folder complete, not yet renamed into place
    ("eval:3", 10),                # the evaluation of step 15, before that step's checkpoint
    ("metrics-line:9", 5),         # the 9th line (train, step 8) torn in half
    ("checkpoint-prune:1", 15),    # step 15 installed, step 5 being deleted (keep 2): one file gone
]


@pytest.mark.parametrize("fault,survivor", KILL_POINTS, ids=[f for f, _ in KILL_POINTS])
def test_sigkill_at_a_fault_point_resumes_from_the_last_complete_checkpoint(tmp_path, data_dir, reference, fault,
                                                                            survivor):
    run = tmp_path / "run"
    proc, marker = start_driver(tmp_path, train_argv(data_dir, run), fault)
    wait_for(marker.exists, proc)
    sigkill(proc)
    # what the kill left: only complete checkpoints under real names
    assert assert_every_checkpoint_verifies(run)[-1] == survivor
    assert find_latest_checkpoint(run / "checkpoints").path.name == f"step_{survivor:07d}"

    assert main(train_argv(data_dir, run, resume=True)) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == survivor
    assert_same_run(run, reference[0])
    assert assert_every_checkpoint_verifies(run)[-1] == STEPS
    assert leftovers(run) == [], f"left behind after {fault}: {leftovers(run)}"


@pytest.mark.parametrize("seed", [0, 1])
def test_repeated_sigkill_at_random_moments_then_resume_equals_the_uninterrupted_run(tmp_path, data_dir, reference,
                                                                                     seed):
    """Kill the real command 3 times at random moments of its training, resume each time."""
    rng = random.Random(seed)
    run, duration = tmp_path / "run", reference[1]
    landed = []
    for attempt in range(3):
        argv = train_argv(data_dir, run, resume=attempt > 0)
        proc, _ = start_driver(tmp_path, argv, "none:0")
        before = mtime(run / "metrics.jsonl")
        wait_for(lambda: mtime(run / "metrics.jsonl") != before, proc)  # training (re)started
        time.sleep(rng.uniform(0, 0.8 * duration))
        if proc.poll() is not None:  # finished before the kill
            landed.append("after the end")
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        steps = [r["step"] for r in read_metrics(run, "train")]
        kept = [c.name for c in list_checkpoints(run / "checkpoints")]
        landed.append(f"after step {max(steps, default=0)}, checkpoints {kept}, temporaries {leftovers(run)}")
        assert_every_checkpoint_verifies(run)
    assert main(train_argv(data_dir, run, resume=True)) == 0, landed
    assert_same_run(run, reference[0], context=f"kills landed at {landed}")
    assert leftovers(run) == [], f"kills at {landed} left {leftovers(run)}"


# ---- damaged checkpoints ----------------------------------------------------------------------

def damage(path: Path, how: str, rng: random.Random) -> None:
    if how == "truncate":
        size = path.stat().st_size
        with open(path, "r+b") as f:
            f.truncate(rng.randrange(0, max(1, size)))
    elif how == "bitflip":
        blob = bytearray(path.read_bytes())
        i = rng.randrange(len(blob))
        blob[i] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(blob))
    elif how == "delete":
        path.unlink()
    else:
        raise AssertionError(how)


DAMAGE_CASES = [(name, how) for name in (*CHECKPOINT_FILES, "manifest.json") for how in ("truncate", "bitflip", "delete")
                if (name, how) != ("manifest.json", "bitflip")]  # flips in the manifest: the next test


@pytest.mark.parametrize("name,how", DAMAGE_CASES, ids=[f"{h}-{n}" for n, h in DAMAGE_CASES])
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, data_dir, reference, name, how,
                                                                          capsys):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    latest = list_checkpoints(run / "checkpoints")[-1]
    previous = list_checkpoints(run / "checkpoints")[-2]
    damage(latest / name, how, random.Random(f"{name}-{how}"))
    reported: list[str] = []
    found = find_latest_checkpoint(run / "checkpoints", report=reported.append)
    assert found.path == previous
    assert len(reported) == 1 and latest.name in reported[0] and name in reported[0], reported
    # the model a reader loads comes from the previous checkpoint, not the damaged one
    from safetensors.torch import load_file

    expected = load_file(str(previous / "model.safetensors"))
    loaded = load_run_model(run).state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # resuming replays from the previous checkpoint and ends where the reference ended
    assert main(train_argv(data_dir, run, resume=True)) == 0
    err = capsys.readouterr().err
    assert latest.name in err and name in err
    assert json.loads((run / "summary.json").read_text())["resumed_from"] == int(previous.name.split("_")[1])
    assert_same_run(run, reference[0])
    assert leftovers(run) == []


def test_every_bit_flip_in_a_manifest_is_detected_or_harmless(tmp_path, reference):
    """Flip single bits all over manifest.json: verification names the checkpoint or returns the same state."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(list_checkpoints(reference[0] / "checkpoints")[-1], ckpt)
    good_state = verify_checkpoint(ckpt)
    original = (ckpt / "manifest.json").read_bytes()
    rng = random.Random(0)
    positions = sorted(rng.sample(range(len(original)), min(len(original), 150)))
    detected = harmless = 0
    for i in positions:
        blob = bytearray(original)
        blob[i] ^= 1 << rng.randrange(8)
        (ckpt / "manifest.json").write_bytes(bytes(blob))
        try:
            state = verify_checkpoint(ckpt)
        except CheckpointError as exc:
            assert ckpt.name in str(exc) and "\n" not in str(exc)
            detected += 1
        else:
            assert state == good_state  # a flip that changes nothing that is checked or used
            harmless += 1
    assert detected + harmless == len(positions) and detected > len(positions) // 2


def test_when_every_checkpoint_is_damaged_resume_fails_with_one_line_naming_them(tmp_path, data_dir, reference,
                                                                               capsys):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    names = []
    for ckpt in list_checkpoints(run / "checkpoints"):
        damage(ckpt / "model.safetensors", "bitflip", random.Random(ckpt.name))
        names.append(ckpt.name)
    code = main(train_argv(data_dir, run, resume=True))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == len(names) + 1  # one "falling back" note per checkpoint, then the error line
    assert all(name in err[-1] for name in names) and "Traceback" not in "\n".join(err)


# ---- a full disk ---------------------------------------------------------------------------------

def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_a_checkpoint_keeps_the_previous_ones(tmp_path, data_dir, reference, monkeypatch, capsys):
    import leviathan_explore.training.checkpoint as checkpoint

    save_file, calls = checkpoint.save_file, {"n": 0}

    def save_file_until_full(tensors, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:  # the 2nd checkpoint's optimizer file: the disk fills up part way
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)
            enospc()
        return save_file(tensors, path, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", save_file_until_full)
    run = tmp_path / "run"
    code = main(train_argv(data_dir, run))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "No space left on device" in err[-1] and "Traceback" not in "\n".join(err)
    assert assert_every_checkpoint_verifies(run) == [5]
    assert leftovers(run) == []
    json.loads((run / "config.json").read_text())
    monkeypatch.undo()
    assert main(train_argv(data_dir, run, resume=True)) == 0
    assert_same_run(run, reference[0])


def test_disk_full_while_writing_the_summary_keeps_the_old_one(tmp_path, data_dir, reference, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(reference[0], run)
    old_summary = (run / "summary.json").read_bytes()
    real_fsync = os.fsync

    def fsync_fails_for_summary(fd):
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(".summary.json."):
            enospc()
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_fails_for_summary)
    with pytest.raises(OSError) as info:
        from leviathan_explore.training.runs import write_json_atomic

        write_json_atomic(run / "summary.json", {"half": "written"})
    assert info.value.errno == errno.ENOSPC
    assert (run / "summary.json").read_bytes() == old_summary
    assert leftovers(run) == []


DATA_WRITERS = ["flush", "manifest", "remap"]


@pytest.mark.parametrize("writer", DATA_WRITERS)
def test_disk_full_during_a_shard_build_keeps_the_previous_data(tmp_path, monkeypatch, writer, capsys):
    from leviathan_explore.data import build_corpus, load_token_data
    from leviathan_explore.data import shards

    out = tmp_path / "shards"
    build_corpus("python-stdlib", out, max_tokens=20_000, compact=128, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    if writer == "flush":
        flush = shards._SplitWriter.flush

        def flush_until_full(self):
            self._fh.write(b"\0" * 64)
            enospc()
        monkeypatch.setattr(shards._SplitWriter, "flush", flush_until_full)
    elif writer == "manifest":
        monkeypatch.setattr(shards, "_write_json", enospc)
    else:
        monkeypatch.setattr(shards, "remap_file", enospc)
    with pytest.raises(OSError) as info:
        build_corpus("python-stdlib", out, max_tokens=30_000, compact=128, seed=1, progress=False)
    assert info.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []
    assert load_token_data(out, verify=True).manifest["seed"] == 0


# ---- an interrupted data build -------------------------------------------------------------------

# The real command, with a relative --out so that two folders' manifests can be compared byte for byte.
BUILD = ["-m", "leviathan_explore.cli", "data", "build", "--source", "python-stdlib", "--max-tokens", "1000000",
         "--compact", "512", "--out", "shards", "--no-progress"]


def shard_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "shards").iterdir())}


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory) -> tuple[dict[str, bytes], float]:
    root = tmp_path_factory.mktemp("clean")
    start = time.perf_counter()
    subprocess.run([PYTHON, *BUILD], cwd=root, check=True, capture_output=True, env=ONE_THREAD)
    return shard_files(root), time.perf_counter() - start


@pytest.mark.parametrize("seed", [0, 1])
def test_an_interrupted_data_build_can_be_rerun_and_gives_identical_shards(tmp_path, clean_build, seed):
    files, duration = clean_build
    rng = random.Random(seed)
    proc = subprocess.Popen([PYTHON, *BUILD], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: any(tmp_path.glob(".shards.tmp-*")), proc)
    time.sleep(rng.uniform(0, 0.6 * duration))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (tmp_path / "shards").exists() or shard_files(tmp_path) == files  # never half-installed
    subprocess.run([PYTHON, *BUILD], cwd=tmp_path, check=True, capture_output=True)
    assert shard_files(tmp_path) == files
    assert leftovers(tmp_path) == [], leftovers(tmp_path)
