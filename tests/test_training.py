"""Trainer, schedule, optimizer groups, checkpoints, resume, run files, distributed launch."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from leviathan_explore.config import ConfigError
from leviathan_explore.params import count_params
from leviathan_explore.model import TransformerLM
from leviathan_explore.training import (CheckpointError, TrainConfig, TrainingDiverged, build_model_config,
                                        find_latest_checkpoint, frequency_buckets, list_checkpoints, load_run_model,
                                        lr_at, read_metrics, read_summary, train, unigram_entropy)
from leviathan_explore.training.batches import WindowSampler, eval_window_starts
from leviathan_explore.training.checkpoint import load_checkpoint
from leviathan_explore.training.optim import build_optimizer, param_groups

PYTHON = sys.executable

# A TokenData-like object: a noisy deterministic chain (next = 3*prev + {0,1,2} mod V) that a
# tiny model can learn, split 90/10. Also used verbatim by the subprocess scripts below.
FAKE_DATA_SOURCE = '''
import numpy as np

class FakeTokenData:
    def __init__(self, vocab_size=64, n_tokens=6000, seed=0):
        rng = np.random.default_rng(seed)
        noise = rng.integers(0, 3, n_tokens)
        t = np.empty(n_tokens, dtype=np.uint32)
        t[0] = 1
        for i in range(1, n_tokens):
            t[i] = (3 * int(t[i - 1]) + int(noise[i])) % vocab_size
        cut = int(0.9 * n_tokens)
        self.vocab_size, self.eot_id = vocab_size, 0
        self.train, self.val = t[:cut], t[cut:]
        self.manifest = {"source": "fake-chain", "content_hash": "fake-%d" % seed}
        self.tokenizer_name = "fake"

    def token_counts(self):
        return np.bincount(self.train, minlength=self.vocab_size).astype(np.int64)
'''
_ns: dict = {}
exec(FAKE_DATA_SOURCE, _ns)
FakeTokenData = _ns["FakeTokenData"]

TINY_MODEL = dict(d_model=32, n_layers=1, n_heads=2)
# At this size one layer outweighs the 64 x 32 table, so no depth matches the dense total:
# tests that train a tiny Leviathan use the same-body match.
TINY_LEVIATHAN = dict(arch="leviathan", match="isobody")


def tiny_cfg(out_dir, **changes) -> TrainConfig:
    base = dict(arch="dense", preset="cpu-tiny", model=dict(TINY_MODEL), steps=12, batch_size=4, seq_len=16,
                lr=3e-3, eval_every=4, eval_batches=2, checkpoint_every=4, log_every=1, device="cpu",
                out_dir=str(out_dir), progress=False)
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two threads on a busy 2-core CI box spin for ages."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    return FakeTokenData()


def train_losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(run_dir, "train")}


def eval_losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["val_loss"] for r in read_metrics(run_dir, "eval")}


# ---- pure components ---------------------------------------------------------------------------

def test_schedule_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    kw = dict(lr=1.0, total_steps=110, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(4, **kw) == pytest.approx(0.5)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way through the cosine
    assert lr_at(110, **kw) == pytest.approx(0.1)
    decay = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))


def test_weight_decay_applies_to_matrices_only():
    from leviathan_explore.model import TransformerLM

    model = TransformerLM(build_model_config(tiny_cfg("/unused", tie_embeddings=True), 64))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert decay["params"] and all(p.dim() >= 2 for p in decay["params"])
    assert no_decay["params"] and all(p.dim() < 2 for p in no_decay["params"])
    lev = TransformerLM(build_model_config(tiny_cfg("/unused", arch="leviathan", match="isobody"), 64))
    lev_decay, lev_no_decay = param_groups(lev, 0.1)
    norms = {id(lev.generator.ln_weight), id(lev.generator.ln_bias)}  # [M, d_seed], yet norm parameters
    assert norms <= {id(p) for p in lev_no_decay["params"]} and not norms & {id(p) for p in lev_decay["params"]}
    assert id(lev.generator.codebooks) in {id(p) for p in lev_decay["params"]}
    # every parameter exactly once (the tied table/head counted once)
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.1, device_type="cpu")
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.0]


def test_cpu_optimizer_is_the_fused_kernel_and_matches_foreach():
    torch.manual_seed(0)
    model = TransformerLM(build_model_config(tiny_cfg("/x"), 64))
    twin = TransformerLM(build_model_config(tiny_cfg("/x"), 64))
    twin.load_state_dict(model.state_dict())
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.1, device_type="cpu")
    assert all(g["fused"] for g in opt.param_groups)
    ref = torch.optim.AdamW(param_groups(twin, 0.1), lr=1e-2, betas=(0.9, 0.95), eps=1e-8, foreach=True)
    for _ in range(20):
        for p, q in zip(model.parameters(), twin.parameters()):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field,value", [("steps", 0), ("steps", -3), ("arch", "mamba"), ("preset", "huge"),
                                         ("batch_size", 0), ("lr", float("nan")), ("match_by", "heads"),
                                         ("device", "tpu"), ("min_lr_ratio", 2.0)])
def test_train_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ConfigError) as exc:
        tiny_cfg("/unused", **{field: value})
    assert field in str(exc.value) and repr(value) in str(exc.value)


def test_train_config_round_trips_and_defaults_leviathan_to_isoparam():
    cfg = tiny_cfg("/x", arch="leviathan")
    assert cfg.match == "isoparam"
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ConfigError, match="match"):
        tiny_cfg("/x", arch="dense", match="isoparam")


def test_build_model_config_takes_the_data_vocabulary_and_matches_parameters():
    dense = build_model_config(tiny_cfg("/x", model={}), 4097)
    assert dense.vocab_size == 4097 and dense.token_repr == "table"
    iso = build_model_config(tiny_cfg("/x", arch="leviathan", model={}), 4097)
    body = build_model_config(tiny_cfg("/x", arch="leviathan", match="isobody", model={}), 4097)
    assert iso.token_repr == body.token_repr == "leviathan"
    assert body.n_layers == dense.n_layers
    assert iso.n_layers > dense.n_layers  # the freed table budget buys depth
    gap = abs(count_params(iso).total - count_params(dense).total) / count_params(dense).total
    assert gap < 0.15
    with pytest.raises(ConfigError, match="vocab_size"):
        build_model_config(tiny_cfg("/x", model={"vocab_size": 10}), 4097)


def test_window_sampler_is_a_deterministic_permutation_of_packed_windows():
    tokens = np.arange(101, dtype=np.uint32)
    s = WindowSampler(tokens, seq_len=10, seed=3)
    assert s.n_windows == 10
    starts = s.window_starts(0, 10)
    assert sorted(starts.tolist()) == list(range(0, 100, 10))  # one epoch: every window once
    assert not np.array_equal(starts, np.arange(0, 100, 10))  # shuffled
    assert np.array_equal(starts, WindowSampler(tokens, 10, seed=3).window_starts(0, 10))
    assert not np.array_equal(starts, WindowSampler(tokens, 10, seed=4).window_starts(0, 10))
    # a batch taken from the middle equals the same samples of a longer read (resume, ranks)
    assert np.array_equal(s.window_starts(7, 6), s.window_starts(0, 13)[7:])
    x, y = s.batch(0, 3)
    assert x.shape == y.shape == (3, 10)
    assert torch.equal(x[:, 1:], y[:, :-1]) and torch.equal(y[:, -1], x[:, -1] + 1)
    with pytest.raises(ValueError, match="seq_len"):
        WindowSampler(tokens[:5], seq_len=10, seed=0)
    assert len(eval_window_starts(101, 10, 4)) == 4 and len(eval_window_starts(101, 10, 50)) == 10


def test_frequency_buckets_split_training_mass_50_40_10_and_unseen_ids_are_rare():
    counts = np.array([50, 0, 25, 15, 6, 4])  # sorted: 0 (50%), 2 (25), 3 (15), 4 (6), 5 (4), 1 (0)
    b = frequency_buckets(counts)
    assert b.tolist() == [0, 2, 1, 1, 2, 2]
    assert unigram_entropy(np.ones(16)) == pytest.approx(math.log(16))
    p = counts[counts > 0] / counts.sum()
    assert unigram_entropy(counts) == pytest.approx(-(p * np.log(p)).sum())


# ---- training runs -------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", ["dense", "leviathan"])
def test_training_on_real_shards_writes_every_run_file(tmp_path, tiny_data_dir, arch):
    seen = {"step": [], "eval": []}

    class Recorder:
        def on_step(self, m):
            seen["step"].append(m)

        def on_eval(self, m):
            seen["eval"].append(m)

    cfg = tiny_cfg(tmp_path / arch, arch=arch, steps=40, eval_every=20, checkpoint_every=10, log_every=5, lr=1e-2,
                   data_dir=str(tiny_data_dir))
    summary = train(cfg, [Recorder()])
    run = tmp_path / arch
    for name in ("config.json", "metrics.jsonl", "summary.json"):
        assert (run / name).is_file()
    ckpts = list_checkpoints(run / "checkpoints")
    assert [p.name for p in ckpts] == ["step_0000030", "step_0000040"]  # the newest two are kept
    for p in ckpts:
        assert {f.name for f in p.iterdir()} == {"model.safetensors", "optimizer.safetensors", "state.json",
                                                 "manifest.json"}
    train_lines = read_metrics(run, "train")
    assert [r["step"] for r in train_lines] == [5, 10, 15, 20, 25, 30, 35, 40]
    for r in train_lines:
        assert set(r) == {"type", "step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "peak_mem_mb"}
        assert r["tokens"] == r["step"] * 4 * 16
    evals = read_metrics(run, "eval")
    assert [r["step"] for r in evals] == [20, 40]
    assert set(evals[-1]["bucket_losses"]) == {"frequent", "medium", "rare"}
    assert len(seen["step"]) == 40 and [m["step"] for m in seen["eval"]] == [20, 40]

    on_disk = read_summary(run)
    for key in ("name", "arch", "match", "match_by", "preset", "model_config", "params", "steps", "tokens_seen",
                "final_val_loss", "final_val_ppl", "bucket_losses", "mean_tokens_per_s", "wall_time_s", "lr",
                "hardware", "data", "stopped_early", "finished"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk["hardware"]) >= {"device", "device_name", "torch", "cpu_count"}
    assert set(on_disk["data"]) >= {"dir", "source", "tokenizer", "vocab_size", "content_hash"}
    assert on_disk["finished"] and not on_disk["stopped_early"] and on_disk["steps"] == 40
    assert on_disk["params"]["total"] == count_params(build_model_config(cfg, 2049)).total
    assert on_disk["data"]["vocab_size"] == 2049 and on_disk["data"]["source"] == "python-stdlib"
    assert on_disk["data"]["tokenizer"] == "o200k_base" and on_disk["data"]["dir"] == str(tiny_data_dir)
    assert on_disk["final_val_ppl"] == pytest.approx(math.exp(on_disk["final_val_loss"]))
    config = json.loads((run / "config.json").read_text())
    assert TrainConfig.from_dict(config) == cfg
    assert train_lines[-1]["loss"] < train_lines[0]["loss"] - 0.5  # learning starts from ~ln(2049)


@pytest.mark.parametrize("arch", ["dense", "leviathan"])
def test_both_architectures_learn_below_the_unigram_entropy(tmp_path, data, arch):
    # the chain has ln(3) ~ 1.1 nats of noise given the previous token; unigram entropy ~ ln(64)
    lev = {"match": "isobody"} if arch == "leviathan" else {}
    summary = train(tiny_cfg(tmp_path / arch, arch=arch, steps=40, eval_every=40, lr=2e-2, **lev), data=data)
    losses = train_losses(tmp_path / arch)
    assert losses[40] < losses[1] - 0.4
    assert summary["final_val_loss"] < summary["unigram_entropy"] - 0.2


def test_callback_stop_then_resume_equals_the_uninterrupted_run(tmp_path, data):
    full = tmp_path / "full"
    train(tiny_cfg(full), data=data)

    class StopAfter:
        def __init__(self, n):
            self.n, self.steps = n, 0

        def on_step(self, m):
            self.steps = m["step"]

        def should_stop(self):
            return self.steps >= self.n

    part = tmp_path / "part"
    summary = train(tiny_cfg(part), [StopAfter(6)], data=data)
    assert summary["stopped_early"] and not summary["finished"] and summary["steps"] == 6
    assert read_summary(part)["stopped_early"] is True
    assert list_checkpoints(part / "checkpoints")[-1].name == "step_0000006"  # written on stop
    resumed = train(tiny_cfg(part, resume=True), data=data)
    assert resumed["finished"] and resumed["resumed_from"] == 6
    a, b = train_losses(full), train_losses(part)
    assert sorted(a) == sorted(b) == list(range(1, 13))
    assert np.allclose([a[s] for s in a], [b[s] for s in a], rtol=0, atol=1e-6)
    assert np.allclose(list(eval_losses(full).values()), list(eval_losses(part).values()), atol=1e-6)
    # a checkpoint from the future is not allowed to be resumed with fewer steps
    with pytest.raises(ConfigError, match="steps"):
        train(tiny_cfg(part, resume=True, steps=5), data=data)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path, data):
    train(tiny_cfg(tmp_path / "big", steps=4), data=data)
    train(tiny_cfg(tmp_path / "accum", steps=4, batch_size=2, grad_accum=2), data=data)
    a, b = train_losses(tmp_path / "big"), train_losses(tmp_path / "accum")
    assert np.allclose([a[s] for s in range(1, 5)], [b[s] for s in range(1, 5)], rtol=0, atol=1e-5)
    assert read_metrics(tmp_path / "accum", "train")[-1]["tokens"] == 4 * 4 * 16


def test_an_existing_run_needs_resume_and_the_same_settings(tmp_path, data):
    run = tmp_path / "r"
    train(tiny_cfg(run, steps=4), data=data)
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_cfg(run, steps=4), data=data)
    with pytest.raises(ConfigError, match="arch"):
        train(tiny_cfg(run, **TINY_LEVIATHAN, steps=8, resume=True), data=data)
    with pytest.raises(ConfigError, match="batch_size"):
        train(tiny_cfg(run, batch_size=8, steps=8, resume=True), data=data)


def test_checkpoint_of_a_different_model_or_vocabulary_is_refused(tmp_path, data):
    from leviathan_explore.model import TransformerLM

    run = tmp_path / "r"
    train(tiny_cfg(run, steps=4), data=data)
    found = find_latest_checkpoint(run / "checkpoints")
    other = build_model_config(tiny_cfg(run, **TINY_LEVIATHAN), data.vocab_size)
    with pytest.raises(CheckpointError, match="different model.*token_repr"):
        load_checkpoint(found, TransformerLM(other), None, other.to_dict())
    bigger = build_model_config(tiny_cfg(run), 80)
    with pytest.raises(CheckpointError, match="vocab_size=64.*vocab_size=80"):
        load_checkpoint(found, TransformerLM(bigger), None, bigger.to_dict())
    # through train(): data with another vocabulary
    with pytest.raises(CheckpointError, match="vocab_size"):
        train(tiny_cfg(run, steps=8, resume=True), data=FakeTokenData(vocab_size=80))


def test_a_corrupt_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, data, capsys):
    run = tmp_path / "r"
    train(tiny_cfg(run, steps=8), data=data)
    newest = run / "checkpoints" / "step_0000008" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    messages = []
    found = find_latest_checkpoint(run / "checkpoints", report=messages.append)
    assert found.path.name == "step_0000004"
    assert "step_0000008" in messages[0] and "model.safetensors" in messages[0]
    summary = train(tiny_cfg(run, steps=8, resume=True), data=data)
    assert summary["resumed_from"] == 4 and summary["finished"]
    assert "step_0000008" in capsys.readouterr().err
    # all corrupt: a clear error naming them
    for p in list_checkpoints(run / "checkpoints"):
        (p / "state.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no valid checkpoint.*state.json"):
        find_latest_checkpoint(run / "checkpoints")


def test_nan_loss_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, data, monkeypatch):
    from leviathan_explore.model import TransformerLM

    state = {"step": 0}
    original = TransformerLM.forward

    def poisoned(self, ids, targets=None, reduction="mean"):
        out = original(self, ids, targets, reduction)
        return out * float("nan") if self.training and state["step"] >= 6 else out

    class Count:
        def on_step(self, m):
            state["step"] = m["step"]

    monkeypatch.setattr(TransformerLM, "forward", poisoned)
    run = tmp_path / "r"
    with pytest.raises(TrainingDiverged, match="loss became nan at step 7.*step_0000004"):
        train(tiny_cfg(run), [Count()], data=data)
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step_0000004"]
    summary = read_summary(run)
    assert summary["stopped_early"] and not summary["finished"] and "step 7" in summary["error"]
    assert max(train_losses(run)) == 6  # nothing logged for the bad step


def test_load_run_model_reads_the_latest_weights_without_unpickling(tmp_path, data, monkeypatch):
    from leviathan_explore.training import evaluate

    run = tmp_path / "r"
    summary = train(tiny_cfg(run, steps=4, **TINY_LEVIATHAN), data=data)

    def no_pickle(*a, **k):
        raise AssertionError("torch.load must not be used")

    monkeypatch.setattr(torch, "load", no_pickle)
    model = load_run_model(run)
    assert model.cfg.token_repr == "leviathan" and not model.training
    # the loaded weights reproduce the trainer's final validation loss on the same windows
    starts = eval_window_starts(len(data.val), 16, 2 * 4)
    windows = WindowSampler(data.val, 16, seed=0).windows(starts)
    buckets = torch.from_numpy(frequency_buckets(data.token_counts()))
    result = evaluate(model, windows, buckets, 4, torch.device("cpu"))
    assert result["val_loss"] == pytest.approx(summary["final_val_loss"], abs=1e-6)
    assert result["bucket_losses"] == pytest.approx(summary["bucket_losses"], abs=1e-6)


def test_training_in_a_background_thread_stops_on_request(tmp_path, data):
    stop = threading.Event()
    result = {}

    class StopWhenAsked:
        def on_step(self, m):
            if m["step"] == 3:
                stop.set()

        def should_stop(self):
            return stop.is_set()

    threads_before = torch.get_num_threads()
    worker = threading.Thread(target=lambda: result.update(train(tiny_cfg(tmp_path / "bg"), [StopWhenAsked()],
                                                                 data=data)))
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert result["stopped_early"] and result["steps"] == 3
    assert torch.get_num_threads() == threads_before


# ---- processes: kill and resume, signals, torchrun ---------------------------------------------------

def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "run_training.py"
    path.write_text(FAKE_DATA_SOURCE + textwrap.dedent('''
        import sys, time
        from pathlib import Path
        from leviathan_explore.training import TrainConfig, train

        def make_cfg(out_dir, **changes):
            base = dict(arch="dense", preset="cpu-tiny", model=dict(d_model=32, n_layers=1, n_heads=2), steps=12,
                        batch_size=4, seq_len=16, lr=3e-3, eval_every=4, eval_batches=2, checkpoint_every=4,
                        log_every=1, device="cpu", out_dir=str(out_dir), progress=False)
            base.update(changes)
            return TrainConfig(**base)
    ''') + textwrap.dedent(body))
    return path


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"training exited early: {proc.communicate()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.05)


def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(tmp_path, tiny_data_dir):
    script = _script(tmp_path, '''
        class HangAfter6:
            def on_step(self, m):
                if m["step"] == 6:  # steps 5-6 are logged but not checkpointed: resume must redo them
                    Path(sys.argv[2]).write_text("ready")
                    time.sleep(600)

        train(make_cfg(sys.argv[1], data_dir=sys.argv[3]), [HangAfter6()])
    ''')
    run, marker = tmp_path / "killed", tmp_path / "marker"
    proc = subprocess.Popen([PYTHON, str(script), str(run), str(marker), str(tiny_data_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert max(train_losses(run)) == 6
    assert list_checkpoints(run / "checkpoints")[-1].name == "step_0000004"

    summary = train(tiny_cfg(run, resume=True, data_dir=str(tiny_data_dir)))
    assert summary["resumed_from"] == 4 and summary["finished"]
    full = tmp_path / "full"
    train(tiny_cfg(full, data_dir=str(tiny_data_dir)))
    a, b = train_losses(full), train_losses(run)
    assert sorted(b) == list(range(1, 13))  # no duplicated steps after the rewrite
    assert np.allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(a)], rtol=0, atol=1e-6)
    assert np.allclose(list(eval_losses(full).values()), list(eval_losses(run).values()), atol=1e-6)


def test_sigterm_checkpoints_and_stops_cleanly(tmp_path):
    script = _script(tmp_path, '''
        class SlowAfter5:
            def on_step(self, m):
                if m["step"] >= 5:
                    Path(sys.argv[2]).write_text("ready")
                    time.sleep(0.3)

        summary = train(make_cfg(sys.argv[1], steps=200), [SlowAfter5()], data=FakeTokenData())
        print("STOPPED", summary["steps"], summary["stopped_early"], summary.get("interrupted_by"))
    ''')
    run, marker = tmp_path / "term", tmp_path / "marker"
    proc = subprocess.Popen([PYTHON, str(script), str(run), str(marker)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    _wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    _, steps, early, by = out.split()[-4:]
    assert early == "True" and by == "SIGTERM" and 5 <= int(steps) < 200
    assert list_checkpoints(run / "checkpoints")[-1].name == f"step_{int(steps):07d}"
    assert read_summary(run)["interrupted_by"] == "SIGTERM"
    assert "SIGTERM received" in err and "--resume" in err


def test_two_process_torchrun_matches_one_process_with_the_same_global_batch(tmp_path, tiny_data_dir):
    script = _script(tmp_path, '''
        import os
        from leviathan_explore.training.batches import WindowSampler

        samples_log = Path(sys.argv[1] + "-samples-rank" + os.environ.get("RANK", "0"))
        original_batch = WindowSampler.batch

        def logged_batch(self, first, count):  # which training samples this rank reads
            with open(samples_log, "a") as f:
                f.write(" ".join(str(first + i) for i in range(count)) + "\\n")
            return original_batch(self, first, count)

        WindowSampler.batch = logged_batch
        s = train(make_cfg(sys.argv[1], steps=3, eval_every=3, checkpoint_every=3, data_dir=sys.argv[2]))
    ''')
    single, double = tmp_path / "single", tmp_path / "double"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    subprocess.run([PYTHON, str(script), str(single), str(tiny_data_dir)], check=True, env=env, capture_output=True,
                   timeout=300)
    res = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(script), str(double), str(tiny_data_dir)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = train_losses(single), train_losses(double)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert np.allclose([a[s] for s in a], [b[s] for s in a], rtol=0, atol=1e-5)
    assert np.allclose(list(eval_losses(single).values()), list(eval_losses(double).values()), atol=1e-5)
    # each rank read its own half of every global batch
    def samples(path):
        return [list(map(int, line.split())) for line in Path(path).read_text().splitlines()]
    one, r0, r1 = samples(f"{single}-samples-rank0"), samples(f"{double}-samples-rank0"), samples(f"{double}-samples-rank1")
    assert [len(b) for b in one] == [4, 4, 4] and [len(b) for b in r0] == [len(b) for b in r1] == [2, 2, 2]
    assert [a + b for a, b in zip(r0, r1)] == one
    summary = read_summary(double)
    assert summary["hardware"]["world_size"] == 2
    assert len(read_metrics(double, "train")) == 3  # only rank 0 wrote


# ---- command line ---------------------------------------------------------------------------------

def _cli(argv, capsys):
    from leviathan_explore.cli import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_train_and_resume(tmp_path, tiny_data_dir, capsys):
    out = tmp_path / "runs" / "tiny"
    args = ["train", "--arch", "leviathan", "--preset", "cpu-tiny", "--steps", "4", "--batch-size", "2",
            "--seq-len", "16", "--data", str(tiny_data_dir), "--out", str(out), "--device", "cpu", "--no-progress"]
    code, stdout, err = _cli(args, capsys)
    assert code == 0, err
    summary = read_summary(out)
    assert summary["finished"] and summary["match"] == "isoparam" and summary["steps"] == 4
    assert "tiny: finished" in stdout and "val loss" in stdout
    assert summary["hardware"]["threads"] == torch.get_num_threads() >= 1
    assert f"on {summary['hardware']['threads']} thread(s)" in stdout
    # again without --resume: refused, the run untouched
    code, _, err = _cli(args, capsys)
    assert code == 2 and "--resume" in err and len(err.strip().splitlines()) == 1
    assert read_summary(out) == summary
    # extend the run to 6 steps with --resume
    args[args.index("4")] = "6"
    code, _, err = _cli(args + ["--resume"], capsys)
    assert code == 0, err
    assert read_summary(out)["steps"] == 6 and read_summary(out)["resumed_from"] == 4


def test_cli_tokens_sets_the_number_of_steps(tmp_path, tiny_data_dir, capsys):
    out = tmp_path / "t"
    code, _, err = _cli(["train", "--arch", "dense", "--tokens", "100", "--batch-size", "2", "--seq-len", "16",
                         "--data", str(tiny_data_dir), "--out", str(out), "--device", "cpu", "--no-progress"], capsys)
    assert code == 0, err
    assert read_summary(out)["steps"] == 4  # ceil(100 / (2 * 16))


def test_cli_compare_prints_a_side_by_side_table(tmp_path, tiny_data_dir, capsys):
    code, stdout, err = _cli(["compare", "--preset", "cpu-tiny", "--steps", "3", "--batch-size", "2", "--seq-len",
                              "16", "--data", str(tiny_data_dir), "--out", str(tmp_path / "cmp"), "--device", "cpu",
                              "--no-progress"], capsys)
    assert code == 0, err
    dense, lev = read_summary(tmp_path / "cmp" / "dense"), read_summary(tmp_path / "cmp" / "leviathan")
    assert dense["arch"] == "dense" and lev["arch"] == "leviathan" and lev["match"] == "isoparam"
    assert lev["model_config"]["n_layers"] > dense["model_config"]["n_layers"]
    for label in ("parameters", "val loss", "loss, rare ids", "tokens/s", "unigram entropy"):
        assert label in stdout
    assert f"{dense['params']['total']:,}" in stdout and f"{lev['params']['total']:,}" in stdout
    assert f"{lev['final_val_loss']:.4f}" in stdout and f"{dense['final_val_loss']:.4f}" in stdout


def test_cli_compare_runs_the_revision_backbone_match(tmp_path, tiny_data_dir, capsys):
    code, stdout, err = _cli(["compare", "--match", "backbone", "--preset", "cpu-tiny", "--steps", "3",
                              "--batch-size", "2", "--seq-len", "16", "--data", str(tiny_data_dir), "--out",
                              str(tmp_path / "cmp"), "--device", "cpu", "--no-progress", "--threads", "1"], capsys)
    assert code == 0, err
    dense, lev = read_summary(tmp_path / "cmp" / "dense"), read_summary(tmp_path / "cmp" / "leviathan")
    assert dense["model_config"]["tie_embeddings"] and not lev["model_config"]["tie_embeddings"]
    assert lev["match"] == "backbone"
    for key in ("d_model", "n_layers", "n_heads", "ffn_hidden", "ffn_ratio"):
        assert dense["model_config"][key] == lev["model_config"][key], key
    assert "dense (tied)" in stdout and "Leviathan identical backbone" in stdout


@pytest.mark.parametrize("argv,needle", [
    (["train", "--arch", "dense", "--steps", "0"], "--steps=0"),
    (["train", "--arch", "dense", "--steps", "-2"], "--steps=-2"),
    (["train", "--arch", "dense", "--preset", "nope", "--steps", "2"], "'nope'"),
    (["train", "--arch", "dense", "--steps", "2", "--data", "{missing}"], "does not exist"),
    (["train", "--arch", "dense", "--steps", "2", "--data", "{empty}"], "manifest.json"),
    (["train", "--arch", "dense", "--match", "isoparam", "--steps", "2"], "--match"),
    (["train", "--arch", "dense"], "--steps"),
    (["compare", "--preset", "nope", "--steps", "2"], "'nope'"),
])
def test_cli_errors_are_one_line_with_exit_2_and_nothing_written(tmp_path, capsys, argv, needle):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "run"
    argv = [a.format(missing=tmp_path / "missing", empty=tmp_path / "empty") for a in argv]
    if "--data" not in argv:
        argv += ["--data", str(tmp_path / "missing")]
    argv += ["--out", str(out), "--device", "cpu", "--no-progress"]
    code, stdout, err = _cli(argv, capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_a_stop_between_micro_batches_discards_the_partial_step(tmp_path, data):
    class StopDuringStep3:
        """Asks to stop after the first micro-batch of step 3 has been computed."""

        def __init__(self):
            self.done, self.polls = 0, 0

        def on_step(self, m):
            self.done = m["step"]

        def should_stop(self):
            self.polls += 1
            return self.done >= 2 and self.polls > 2 * 4 + 1  # 4 polls per step: 1 before, 3 between

    cb = StopDuringStep3()
    summary = train(tiny_cfg(tmp_path / "r", steps=6, grad_accum=4, batch_size=1), [cb], data=data)
    assert summary["stopped_early"] and summary["steps"] == 2
    assert list_checkpoints(tmp_path / "r" / "checkpoints")[-1].name == "step_0000002"
    assert max(train_losses(tmp_path / "r")) == 2
    resumed = train(tiny_cfg(tmp_path / "r", steps=6, grad_accum=4, batch_size=1, resume=True), data=data)
    assert resumed["finished"] and resumed["resumed_from"] == 2


def test_progress_reaches_a_file_as_timed_lines(tmp_path, data, monkeypatch):
    import io

    from leviathan_explore.training import progress as progress_module

    stream = io.StringIO()  # not a terminal, like a log file or CI
    now = [0.0]
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: now[0])
    bar = progress_module.TrainingProgress(10, 0, "run", stream=stream, interval_s=5.0)
    for step in range(1, 11):
        now[0] += 3.0  # every step takes 3 s: a line at most every other step, and the last
        bar.update(step, 4.0 - 0.1 * step, 1234.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5 and lines[-1].startswith("[train run] step 10/10 (100%)")
    assert lines[0].startswith("[train run] step 2/10") and "1,234 tokens/s" in lines[0]
    assert "elapsed 0:00:06  ETA 0:00:24" in lines[0]


def test_a_redirected_train_command_prints_progress_lines(tmp_path):
    script = FAKE_DATA_SOURCE + f'''
from leviathan_explore.training import TrainConfig, train
cfg = TrainConfig(arch="dense", preset="cpu-tiny", model={TINY_MODEL!r}, steps=30, batch_size=4, seq_len=16,
                  eval_every=30, eval_batches=1, checkpoint_every=30, device="cpu", out_dir={str(tmp_path / "r")!r})
import leviathan_explore.training.trainer as t
orig = t.TrainingProgress
t.TrainingProgress = lambda *a, **k: orig(*a, **{{**k, "interval_s": 0.0}})
train(cfg, data=FakeTokenData())
'''
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[train r] step")]
    assert len(lines) == 30 and "\r" not in proc.stderr and lines[-1].startswith("[train r] step 30/30")


# ---- components: the nested config, the train state, the checkpointer, the evaluator, callbacks -----

def test_train_config_sections_and_flat_names_are_one_setting():
    from leviathan_explore.training.config import FLAT_SETTINGS, OptimSettings

    cfg = tiny_cfg("/x", arch="leviathan", match="isobody", lr=1e-2, eval_every=5, keep_checkpoints=3)
    assert cfg.optim.lr == cfg.lr == 1e-2 and cfg.eval.every == 5 and cfg.checkpoint.keep == 3
    assert cfg.architecture.overrides is cfg.model and cfg.data.dir == cfg.data_dir == ""
    cfg.lr = 2e-2  # a flat name writes its section
    assert cfg.optim.lr == 2e-2
    other = cfg.replace(lr=5e-3)
    assert other.lr == 5e-3 and cfg.lr == 2e-2  # replace copies the section it changes
    assert list(cfg.to_dict()) == list(FLAT_SETTINGS)  # config.json keeps its flat keys, in order
    given = TrainConfig(optim=OptimSettings(lr=0.5, weight_decay=0.0), grad_clip=0.0, out_dir="/x")
    assert (given.lr, given.weight_decay, given.grad_clip) == (0.5, 0.0, 0.0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'learning_rate'"):
        TrainConfig(learning_rate=1e-3)
    with pytest.raises(ConfigError, match="lr"):  # validation names the flat setting
        tiny_cfg("/x", lr=-1.0)


def test_train_config_reads_the_flat_the_nested_and_a_mixed_form():
    cfg = tiny_cfg("/x", arch="leviathan", match="isobody", seq_len=32, seed=4)
    nested = json.loads(json.dumps(cfg.to_nested_dict()))
    assert set(nested) == {"architecture", "optim", "schedule", "data", "eval", "checkpoint", "run"}
    assert nested["optim"]["lr"] == cfg.lr and nested["architecture"]["overrides"] == cfg.model
    assert TrainConfig.from_dict(nested) == cfg == TrainConfig.from_dict(cfg.to_dict())
    mixed = {**{k: v for k, v in nested.items() if k != "optim"}, "lr": cfg.lr, "weight_decay": cfg.weight_decay,
             "grad_clip": cfg.grad_clip, "model_config": {"ignored": True}}
    assert TrainConfig.from_dict(mixed) == cfg
    with pytest.raises(ConfigError, match="lr.*given twice.*optim.lr"):
        TrainConfig.from_dict({**nested, "lr": 0.1})
    with pytest.raises(ConfigError, match=r"optim\.rate.*not a setting of optim.*'lr'"):
        TrainConfig.from_dict({**nested, "optim": {"rate": 0.1}})
    with pytest.raises(ConfigError, match="optim.*must be an object"):
        TrainConfig.from_dict({**nested, "optim": 0.1})
    with pytest.raises(ConfigError, match="learning_rate.*not a training setting"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_a_run_whose_config_json_is_nested_resumes_and_still_refuses_a_changed_setting(tmp_path, data):
    run = tmp_path / "r"
    train(tiny_cfg(run, steps=4), data=data)
    saved = json.loads((run / "config.json").read_text())
    nested = {**TrainConfig.from_dict(saved).to_nested_dict(), "model_config": saved["model_config"]}
    (run / "config.json").write_text(json.dumps(nested))
    with pytest.raises(ConfigError, match="lr"):
        train(tiny_cfg(run, steps=6, lr=1e-2, resume=True), data=data)
    assert train(tiny_cfg(run, steps=6, resume=True), data=data)["resumed_from"] == 4


def test_train_state_round_trips_through_its_state_dict():
    from leviathan_explore.training import TrainState

    state = TrainState()
    state.advance(samples=8, tokens=128, seconds=0.25)
    state.advance(samples=8, tokens=128, seconds=0.5)
    state.last_eval = {"type": "eval", "step": 2, "val_loss": 3.0}
    saved = json.loads(json.dumps(state.state_dict()))
    assert saved["step"] == 2 and saved["data_position"] == 16 and saved["tokens_seen"] == 256
    assert saved["train_time_s"] == 0.75 and saved["wall_time_s"] >= 0
    restored = TrainState()
    restored.load_state_dict(saved)
    assert (restored.step, restored.data_position, restored.tokens, restored.train_time_s, restored.last_eval) == \
        (2, 16, 256, 0.75, state.last_eval)
    assert restored.prior_wall_time_s == saved["wall_time_s"] and restored.wall_time_s >= saved["wall_time_s"]


def test_the_checkpointer_saves_when_due_keeps_the_newest_and_restores_the_state(tmp_path):
    from leviathan_explore.model import TransformerLM
    from leviathan_explore.training import Checkpointer, TrainState

    def parts():
        model_cfg = build_model_config(tiny_cfg("/x"), 64)
        model = TransformerLM(model_cfg)
        return model, build_optimizer(model, lr=1e-3, weight_decay=0.1, device_type="cpu"), model_cfg

    model, opt, model_cfg = parts()
    state = TrainState()
    ckpt = Checkpointer(tmp_path / "checkpoints", every=3, keep=2, model=model, optimizer=opt, train_state=state,
                        run_info={"model_config": model_cfg.to_dict(), "arch": "dense"})
    written = []
    for _ in range(8):
        state.advance(samples=4, tokens=64, seconds=0.1)
        written.append(ckpt.save(state.step, last=state.step == 8))
    assert written == [False, False, True, False, False, True, False, True]  # steps 3, 6 and the last
    assert ckpt.save(8, last=True) is False  # a step already saved is not written again
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_0000006", "step_0000008"]
    assert state.last_checkpoint == "step_0000008"

    model2, opt2, _ = parts()
    with torch.no_grad():
        for p in model2.parameters():
            p.zero_()
    restored = TrainState()
    loader = Checkpointer(tmp_path / "checkpoints", every=3, keep=2, model=model2, optimizer=opt2,
                          train_state=restored, run_info={"model_config": model_cfg.to_dict()})
    saved = loader.load_latest()
    assert saved["arch"] == "dense" and saved["tokens_seen"] == 8 * 64
    assert (restored.step, restored.data_position, restored.resumed_from, restored.last_checkpoint) == \
        (8, 32, 8, "step_0000008")
    for a, b in zip(model.parameters(), model2.parameters()):
        assert torch.equal(a, b)
    empty = Checkpointer(tmp_path / "none", every=1, keep=1, model=model2, optimizer=opt2, train_state=TrainState(),
                         run_info={"model_config": model_cfg.to_dict()})
    assert empty.load_latest() is None


def test_the_evaluator_owns_its_interval_and_its_windows(data):
    from leviathan_explore.training import Evaluator

    calls = []

    def fake_evaluate(model, windows, bucket_of, batch_size, device, autocast_dtype, all_reduce=None):
        calls.append((windows.shape, batch_size))
        return {"val_loss": 1.5, "val_ppl": 4.48, "bucket_losses": {"frequent": 1.0}, "val_tokens": 1}

    ev = Evaluator.for_split(data.val, data.token_counts(), seq_len=16, seed=0, n_sequences=6, every=4, last_step=10,
                             batch_size=3, device=torch.device("cpu"), evaluate_fn=fake_evaluate)
    assert [s for s in range(1, 11) if ev.should_evaluate(s)] == [4, 8, 10]
    assert ev.windows.shape == (6, 17) and ev.bucket_of.shape == (64,)
    record = ev.evaluate(None, step=4, tokens=256)
    assert record == {"type": "eval", "step": 4, "tokens": 256, "val_loss": 1.5, "val_ppl": 4.48,
                      "bucket_losses": {"frequent": 1.0}}
    assert calls == [((6, 17), 3)]
    half = Evaluator.for_split(data.val, data.token_counts(), seq_len=16, seed=0, n_sequences=6, rank=1, world_size=2,
                               every=4, last_step=10, batch_size=3, device=torch.device("cpu"))
    assert torch.equal(half.windows, ev.windows[1::2])


def test_callbacks_need_only_the_methods_they_use():
    from leviathan_explore.training import Callback, TrainCallback
    from leviathan_explore.training.callbacks import as_callback

    seen = []

    class OnlySteps:
        def on_step(self, m):
            seen.append(m["step"])

    partial = as_callback(OnlySteps())
    assert isinstance(partial, TrainCallback)
    partial.on_step({"step": 1})
    partial.on_eval({"step": 1})
    assert partial.should_stop() is False and seen == [1]

    class Stopper(Callback):
        def should_stop(self):
            return True

    full = Stopper()
    assert as_callback(full) is full and full.should_stop() and full.on_step({}) is None
