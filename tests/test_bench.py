"""The benchmark harness: token ids, timing order, FLOP counts, a tiny end-to-end run, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from leviathan_explore import benchmark as bench
from leviathan_explore.cli import main
from leviathan_explore.config import ModelConfig, preset
from leviathan_explore.model import TransformerLM


def test_zipf_ids_are_in_range_deterministic_and_skewed():
    a = bench.zipf_token_ids(5000, 4000, seed=3)
    assert torch.equal(a, bench.zipf_token_ids(5000, 4000, seed=3))
    assert a.min() >= 0 and a.max() < 5000
    counts = torch.bincount(a, minlength=5000).sort(descending=True).values
    assert counts[0] > 20 * counts[100]  # rank 1 about 100^1.1 times as frequent as rank 101


def test_token_ids_from_a_file_are_tiled_and_checked(tmp_path):
    path = tmp_path / "ids.npy"
    np.save(path, np.array([5, 6, 7], dtype=np.uint32))
    ids, source = bench.token_ids(10, 7, path)
    assert ids.tolist() == [5, 6, 7, 5, 6, 7, 5] and source == "file:ids.npy"
    with pytest.raises(ValueError, match="id 7 is outside the vocabulary"):
        bench.token_ids(7, 3, path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        bench.token_ids(10, 3, tmp_path / "missing.npy")


def test_committed_o200k_sample_is_used_for_the_o200k_vocabulary():
    if not bench.TOKEN_SAMPLE.exists():
        pytest.skip("benchmarks/o200k_code_sample.npy not built")
    ids, source = bench.token_ids(bench.GEN_VOCAB, 1000)
    assert source.startswith("file:") and int(ids.max()) < bench.GEN_VOCAB
    # real text repeats ids far more than a uniform draw would
    assert torch.unique(ids).numel() < 700


def test_interleaved_medians_alternates_after_warmup():
    calls = []
    fns = {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}
    out = bench.interleaved_medians(fns, torch.device("cpu"), warmup=1, repeats=3)
    assert calls == ["a", "b"] * 4
    assert set(out) == {"a", "b"} and all(v["min_s"] <= v["median_s"] <= v["max_s"] for v in out.values())


def test_matmul_params_count_every_linear_weight():
    for cfg in (preset("cpu-tiny"), ModelConfig(vocab_size=77, d_model=24, n_layers=3, n_heads=4, n_kv_heads=2)):
        model = TransformerLM(cfg)
        linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
        assert bench.matmul_params(cfg) == linear
        tokens, T = 64, 16
        attention = 12 * cfg.n_layers * cfg.d_model * T * tokens
        assert bench.train_step_flops(cfg, tokens, T) == 6 * linear * tokens + attention


def test_generator_flops_reference_exceeds_fast_by_the_basis_width():
    lev = preset("paper-109m").leviathan
    fast, ref = bench.generator_flops_per_id(512, lev), bench.generator_flops_per_id(512, lev, reference=True)
    M, d, r, kappa = lev.n_modes, lev.d_seed, lev.rank, lev.n_knots
    assert ref - fast == pytest.approx((2 * kappa - 6) * M * d * r)


TINY_PLAN = bench.BenchPlan(device="cpu", quick=True, gen_positions=48, gen_widths=(16,), presets=("cpu-tiny",),
                            batch_size=2, seq_len=16, infer_batch=1, warmup=1, repeats=2, gen_vocab=600)


def test_tiny_end_to_end_run_reports_matching_fast_paths_and_every_ratio(tmp_path):
    results = bench.run_benchmarks("cpu", plan=TINY_PLAN, progress=False, log=lambda line: None)
    assert results["errors"] == []
    gen_rows = results["generator"]
    assert [(g["vocab_size"], g["d_model"]) for g in gen_rows] == [(600, 16), (4097, 64)]
    for g in gen_rows:
        assert set(g["impls"]) >= {"embedding", "reference", "sparse", "fused"}
        for impl in ("sparse", "fused"):
            assert g["impls"][impl]["rel_err_forward"] <= 1e-5 and g["impls"][impl]["rel_err_grads"] <= 1e-5
            assert g["impls"][impl]["saved_mb"] < g["impls"]["reference"]["saved_mb"]
        assert g["speedup_vs_reference"] > 0
    train = results["training"][0]
    assert set(train["models"]) == {"dense", "leviathan_isobody", "leviathan_isoparam"}
    assert train["models"]["leviathan_isoparam"]["n_layers"] > train["models"]["dense"]["n_layers"]
    assert 0 < train["flop_floor"]["best_isobody_ratio"] < 1
    # on a CPU the MFU denominator is the matmul rate timed in the same rounds as the steps
    rate = train["matmul_rate"]
    assert rate["where"].startswith("interleaved") and rate["tflops"] > 0
    dense = train["models"]["dense"]
    assert dense["mfu"] == pytest.approx(dense["flops_per_step"] / dense["median_s"] / (rate["tflops"] * 1e12))
    infer = results["inference"][0]
    assert infer["cached_vs_uncached_max_abs_diff"] < 1e-4
    whats = [r["what"] for r in results["ratios"]]
    assert any("iso-body / dense" in w for w in whats) and any("table cache" in w for w in whats)
    report = bench.format_report(results)
    assert report.rstrip().splitlines()[-1].startswith("inference tokens/s")  # the ratios table is last
    bench.write_json(results, tmp_path / "out" / "bench.json")
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["plan"]["gen_vocab"] == 600
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["bench.json"]


def test_cli_bench_errors_exit_2_with_one_line(tmp_path, capsys):
    if not torch.cuda.is_available():
        assert main(["bench", "--device", "cuda"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no CUDA device" in err[0]
    assert main(["bench", "--device", "cpu", "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a directory" in err[0]
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--device", "tpu"])
    assert exc.value.code == 2


def test_the_package_takes_its_o200k_sample_from_the_caller(tmp_path):
    import inspect

    from leviathan_explore import bench as package

    sample = tmp_path / "sample.npy"
    np.save(sample, np.array([7, 199_000, 7], dtype=np.uint32))
    ids, source = package.token_ids(package.GEN_VOCAB, 4)  # no sample named: a Zipf draw
    assert source.startswith("zipf")
    ids, source = package.token_ids(package.GEN_VOCAB, 4, o200k_sample=sample)
    assert ids.tolist() == [7, 199_000, 7, 7] and source == "file:sample.npy"
    # only for an o200k vocabulary, and a missing sample is passed over
    assert package.token_ids(600, 4, o200k_sample=sample)[1].startswith("zipf")
    assert package.token_ids(package.GEN_VOCAB, 4, o200k_sample=tmp_path / "none.npy")[1].startswith("zipf")
    # the package names no file of a checkout; the old module name supplies the committed sample
    for module in ("runner", "suites", "timing", "report"):
        assert "o200k_code_sample" not in inspect.getsource(getattr(package, module))
    assert inspect.signature(bench.run_benchmarks).parameters["o200k_sample"].default == bench.TOKEN_SAMPLE


def test_the_bench_command_refuses_a_directory_for_json_before_running(tmp_path):
    from leviathan_explore.bench import bench_command

    with pytest.raises(ValueError, match="is a directory"):
        bench_command(device="cpu", json_file=tmp_path)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("quick", [False, True])
def test_every_plan_names_presets_that_exist(device, quick):
    from leviathan_explore.config import PRESETS

    plan = bench.make_plan(device, quick)
    assert plan.presets and all(p in PRESETS for p in plan.presets)
