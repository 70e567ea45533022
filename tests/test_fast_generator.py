"""The fast generator paths (kernels.py) against the reference, the table cache, the fused loss."""

from __future__ import annotations

import contextlib
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
import torch
import torch.nn.functional as F

from leviathan_explore.config import LeviathanConfig, ModelConfig
from leviathan_explore.generator import LeviathanGenerator, bspline_active, bspline_basis
from leviathan_explore.bsplines import active_weights_and_slopes
from leviathan_explore.kernels import FusedModeFeatures, default_impl, fast_mode_features, resolve_impl
from leviathan_explore.loss import fused_linear_cross_entropy
from leviathan_explore.model import TransformerLM, chunked_cross_entropy

FAST = ["sparse", "fused", "native"]
SMALL = LeviathanConfig(k=3, d_seed=12, n_modes=3, n_knots=9, rank=5)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def special_u(n_knots: int, n_random: int = 40, seed: int = 0) -> torch.Tensor:
    """Coordinates at 0, 1, every basis centre, every knot (half-way between centres), and random."""
    h = 1.0 / (n_knots - 1)
    centres = torch.arange(n_knots) * h
    knots = (torch.arange(n_knots - 1) + 0.5) * h
    rand = torch.rand(n_random, generator=torch.Generator().manual_seed(seed))
    return torch.cat([torch.tensor([0.0, 1.0]), centres, knots, rand]).float()


def run_generator(gen: LeviathanGenerator, ids: torch.Tensor, impl: str, grad_out: torch.Tensor):
    gen.impl = impl
    gen.zero_grad(set_to_none=True)
    out = gen(ids)
    out.backward(grad_out)
    return out.detach(), {n: p.grad.detach().clone() for n, p in gen.named_parameters()}


# ---- the basis at the edges ------------------------------------------------------------------

@pytest.mark.parametrize("n_knots", [3, 9, 17, 32])
def test_active_basis_equals_dense_basis_at_knots_centres_and_ends(n_knots):
    # n_knots = 9 and 17 make the spacing a power of two, so knots are exactly representable
    u = special_u(n_knots)
    idx, w = bspline_active(u, n_knots)
    dense = torch.zeros(len(u), n_knots).scatter_add_(1, idx, w)
    torch.testing.assert_close(dense, bspline_basis(u, n_knots), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(w.sum(-1), torch.ones(len(u)), rtol=0, atol=1e-6)
    assert (w >= 0).all()


@pytest.mark.parametrize("n_knots", [3, 9, 17])
def test_active_basis_derivative_equals_dense_basis_derivative(n_knots):
    u = special_u(n_knots).requires_grad_()
    probe = torch.randn(len(u), n_knots, generator=torch.Generator().manual_seed(1))
    (g_dense,) = torch.autograd.grad((bspline_basis(u, n_knots) * probe).sum(), u)
    idx, w = bspline_active(u, n_knots)
    (g_active,) = torch.autograd.grad((w * probe.gather(1, idx)).sum(), u)
    torch.testing.assert_close(g_active, g_dense, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_knots", [3, 9, 17])
def test_closed_form_slopes_equal_autograd_of_bspline_active(n_knots):
    # the Triton path's weights and dw/du are written out by hand
    u = special_u(n_knots).view(-1, 1, 1).requires_grad_()
    idx, w = bspline_active(u, n_knots)
    idx2, w2, dw = active_weights_and_slopes(u.detach(), n_knots)
    assert torch.equal(idx, idx2)
    torch.testing.assert_close(w2, w.detach(), rtol=0, atol=1e-7)
    for j in range(3):
        (g,) = torch.autograd.grad(w[..., j].sum(), u, retain_graph=True)
        torch.testing.assert_close(dw[..., j], g, rtol=1e-5, atol=1e-5)


# ---- stage 3 on hand-placed coordinates -------------------------------------------------------

@pytest.mark.parametrize("impl", FAST)
def test_mode_features_forward_and_gradients_at_special_coordinates(impl):
    torch.manual_seed(0)
    gen = LeviathanGenerator(500, 8, LeviathanConfig(k=3, d_seed=8, n_modes=2, n_knots=17, rank=4))
    coords = special_u(17, n_random=0)
    u = coords[torch.randint(0, len(coords), (30, 2, 8))].requires_grad_()
    probe = torch.randn(30, 2, 4)
    gen.impl = "reference"
    ref = gen.mode_features(u)
    ref_gu, ref_gd = torch.autograd.grad((ref * probe).sum(), (u, gen.spline_delta))
    out = fast_mode_features(u, gen.spline_delta, impl)
    gu, gd = torch.autograd.grad((out * probe).sum(), (u, gen.spline_delta))
    assert rel_err(out, ref) <= 1e-5
    assert rel_err(gu, ref_gu) <= 1e-5
    assert rel_err(gd, ref_gd) <= 1e-5


@pytest.mark.parametrize("impl", FAST)
def test_mode_features_with_a_vanishing_factor_follow_the_reference_clamp(impl):
    # a factor of exactly 0 (coefficients S = 1 + Delta = 0 on one coordinate) and one far below
    # 1e-30: the reference clamps |phi| at 1e-30, so Psi is tiny but not 0, with the sign kept.
    # Mode 2: factors 1e15, 1e15, 1e15, then three of 2^-24 (the smallest 1 + Delta float32 holds),
    # an ordinary product (~2e23) whose running partial product leaves float32's range
    torch.manual_seed(0)
    gen = LeviathanGenerator(500, 8, LeviathanConfig(k=3, d_seed=6, n_modes=3, n_knots=9, rank=4))
    with torch.no_grad():
        gen.spline_delta[0, 2] = -1.0                 # mode 0, coordinate 2: phi = 0
        gen.spline_delta[1, 4, :, 1] = -1.0 - 1e-38   # mode 1, coordinate 4, rank 1: |phi| ~ 1e-38
        gen.spline_delta[2, :3] = 1e15
        gen.spline_delta[2, 3:] = 2.0 ** -24 - 1.0
    u = torch.rand(20, 3, 6).requires_grad_()
    probe = torch.randn(20, 3, 4)
    probe[:, 2] = 0.0  # mode 2 checks the forward only (its du are 1e15-scale cancellations)
    gen.impl = "reference"
    ref = gen.mode_features(u)
    ref_gu, ref_gd = torch.autograd.grad((ref * probe).sum(), (u, gen.spline_delta))
    out = fast_mode_features(u, gen.spline_delta, impl)
    gu, gd = torch.autograd.grad((out * probe).sum(), (u, gen.spline_delta))
    assert (ref[:, 0] != 0).all() and (ref[:, 0].abs() < 1e-20).all()
    torch.testing.assert_close(out[:, 0], ref[:, 0], rtol=1e-5, atol=0.0)   # the clamped mode, entry by entry
    assert torch.isfinite(ref[:, 2]).all() and (ref[:, 2] > 1e23).all() and (ref[:, 2] < 1e24).all()
    torch.testing.assert_close(out[:, 2], ref[:, 2], rtol=1e-4, atol=0.0)  # exp of a float32 log-sum ~54
    assert rel_err(out[:, :2], ref[:, :2]) <= 1e-5
    assert rel_err(gu, ref_gu) <= 1e-5
    assert rel_err(gd, ref_gd) <= 1e-5


def test_fused_chunks_agree_with_one_chunk_and_keep_little_for_backward():
    torch.manual_seed(0)
    u = torch.rand(37, 3, 12, requires_grad=True)
    coeff = (1 + 0.05 * torch.randn(3, 12, 9, 5)).requires_grad_()
    probe = torch.randn(37, 3, 5)
    outs = []
    for chunk in (37, 8):  # one chunk, and five chunks with a short last one
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            psi = FusedModeFeatures.apply(u, coeff, chunk)
        outs.append((psi, *torch.autograd.grad((psi * probe).sum(), (u, coeff))))
        # u, coeff and Psi only: never phi [n, M, d, r]
        assert sum(saved) == u.numel() + coeff.numel() + psi.numel()
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# ---- the whole generator: every parameter gradient -----------------------------------------

@pytest.mark.parametrize("impl", FAST)
def test_fast_generator_matches_reference_forward_and_every_gradient(impl):
    torch.manual_seed(0)
    gen = LeviathanGenerator(3000, 24, SMALL)
    ids = torch.randint(0, 3000, (4, 33))
    ids[1, :10] = ids[0, 5]  # repeated ids: gradients accumulate through the gather
    ids[2, 0], ids[3, 0] = 0, 2999  # the ends of the vocabulary
    grad_out = torch.randn(4, 33, 24)
    ref_out, ref_grads = run_generator(gen, ids, "reference", grad_out)
    out, grads = run_generator(gen, ids, impl, grad_out)
    assert rel_err(out, ref_out) <= 1e-5
    for name, g in ref_grads.items():
        assert rel_err(grads[name], g) <= 1e-5, name


@pytest.mark.parametrize("impl", FAST)
def test_fast_generator_matches_reference_at_paper_settings(impl):
    # d_seed 128 factors in each product: the regime where the log-magnitude form matters
    torch.manual_seed(1)
    gen = LeviathanGenerator(200_019, 16, LeviathanConfig(d_seed=128, n_modes=2, n_knots=32, rank=8))
    ids = torch.tensor([[0, 1, 58, 59, 200_018, 123_456, 1, 1]])
    grad_out = torch.randn(1, 8, 16)
    ref_out, ref_grads = run_generator(gen, ids, "reference", grad_out)
    out, grads = run_generator(gen, ids, impl, grad_out)
    assert rel_err(out, ref_out) <= 1e-5
    for name, g in ref_grads.items():
        assert rel_err(grads[name], g) <= 1e-5, name


@pytest.mark.parametrize("impl", FAST)
def test_fast_model_matches_reference_under_bf16_autocast(impl):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=700, d_model=32, n_layers=1, n_heads=2, max_seq_len=16,
                      token_repr="leviathan", leviathan=SMALL)
    model = TransformerLM(cfg)
    ids = torch.randint(0, 700, (2, 16))
    results = {}
    for name in ("reference", impl):
        model.generator.impl = name
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(ids, ids)
        loss.backward()
        results[name] = (loss.detach(), {n: p.grad.clone() for n, p in model.generator.named_parameters()})
    (ref_loss, ref_grads), (loss, grads) = results["reference"], results[impl]
    assert rel_err(loss, ref_loss) <= 1e-2
    for name, g in ref_grads.items():
        assert rel_err(grads[name], g) <= 1e-2, name


def test_impl_names_are_checked_and_auto_resolves_per_device():
    gen = LeviathanGenerator(100, 8, SMALL)
    with pytest.raises(ValueError, match="impl='fastest'.*allowed"):  # refused when set, not at the next call
        gen.impl = "fastest"
    assert gen.impl == "auto"
    assert resolve_impl("auto", "cpu") == default_impl("cpu") in ("native", "fused")
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ValueError, match="triton"):
            resolve_impl("triton", "cpu")


def test_the_native_kernel_builds_wherever_a_c_compiler_is_found_and_is_the_cpu_default():
    import shutil

    from leviathan_explore import modes_cpu

    if shutil.which("cc") or shutil.which("gcc"):
        assert modes_cpu.available(), modes_cpu.unavailable_reason()
        assert default_impl("cpu") == "native"


@contextlib.contextmanager
def _float64_internals():
    """Let the reference keep float64 tensors where it casts to float32 (``.float()``), so that a
    float64 copy of a generator computes the same formulas in float64: the truth both float32
    computations are measured against."""
    cast = torch.Tensor.float
    torch.Tensor.float = lambda t, *a, **kw: t if t.dtype == torch.float64 else cast(t, *a, **kw)
    try:
        yield
    finally:
        torch.Tensor.float = cast


def float64_reference(gen: LeviathanGenerator, ids: torch.Tensor, grad_out: torch.Tensor):
    twin = copy.deepcopy(gen).double()
    with _float64_internals():
        out, grads = run_generator(twin, ids, "reference", grad_out.double())
    assert out.dtype == torch.float64 and all(g.dtype == torch.float64 for g in grads.values())
    return out, grads


@settings(max_examples=25, deadline=None)
# d_seed >= 4: over two or three coordinates the layer norm is near-degenerate (gradients ~0, so a
# relative error measures rounding noise)
@given(k=st.integers(1, 3), d_seed=st.integers(4, 16), n_modes=st.integers(1, 4), n_knots=st.integers(3, 20),
       rank=st.integers(1, 9), vocab=st.integers(2, 400), d_model=st.integers(1, 12), seed=st.integers(0, 10_000),
       delta_std=st.sampled_from([0.05, 0.3, 0.6]))
# a draw where fused and reference differed by 1.67e-5 in ln_bias's gradient: each was within 1e-5 of float64
@example(k=2, d_seed=4, n_modes=1, n_knots=4, rank=2, vocab=87, d_model=1, seed=7, delta_std=0.05)
def test_cpu_fast_paths_equal_the_reference_for_random_configurations(k, d_seed, n_modes, n_knots, rank, vocab,
                                                                     d_model, seed, delta_std):
    """Each fast path is as close to the float64 truth as the float32 reference is: within 1e-5
    relative, plus twice the reference's own rounding error. (Compared with each other, two
    correct float32 sums with cancellation can differ by the sum of their two errors; 400 random
    draws here put the float32 reference itself up to 1.7e-5 from float64.)"""
    torch.manual_seed(seed)
    gen = LeviathanGenerator(vocab, d_model, LeviathanConfig(k=k, d_seed=d_seed, n_modes=n_modes, n_knots=n_knots,
                                                             rank=rank, spline_init_std=delta_std))
    ids = torch.randint(0, vocab, (3, 11))
    grad_out = torch.randn(3, 11, d_model)
    ref_out, ref_grads = run_generator(gen, ids, "reference", grad_out)
    true_out, true_grads = float64_reference(gen, ids, grad_out)
    for impl in ("fused", "native"):
        out, grads = run_generator(gen, ids, impl, grad_out)
        assert rel_err(out, true_out) <= 1e-5 + 2 * rel_err(ref_out, true_out), impl
        for name, g in true_grads.items():
            bar = 1e-5 + 2 * rel_err(ref_grads[name], g)
            assert rel_err(grads[name], g) <= bar, (impl, name, rel_err(grads[name], g), bar)


# ---- Triton, through its CPU interpreter --------------------------------------------------------

TRITON_CHECK = r"""
import torch
from leviathan_explore.config import LeviathanConfig
from leviathan_explore.generator import LeviathanGenerator
torch.manual_seed(0)
worst = 0.0
for cfg, V, D in [(LeviathanConfig(k=3, d_seed=12, n_modes=3, n_knots=7, rank=5), 1000, 24),
                  (LeviathanConfig(k=3, d_seed=16, n_modes=2, n_knots=17, rank=8), 5000, 16)]:
    gen = LeviathanGenerator(V, D, cfg)
    ids = torch.randint(0, V, (2, 20)); ids[1, :6] = ids[0, 3]; ids[0, 0] = V - 1
    g = torch.randn(2, 20, D)
    res = {}
    for impl in ("reference", "triton"):
        gen.impl = impl; gen.zero_grad()
        out = gen(ids); out.backward(g)
        res[impl] = [out.detach()] + [p.grad.clone() for p in gen.parameters()]
    for a, b in zip(res["triton"], res["reference"]):
        worst = max(worst, float((a - b).norm() / b.norm()))
print("WORST", worst)
"""


def test_triton_kernels_match_reference_in_the_interpreter():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", TRITON_CHECK], capture_output=True, text=True, env=env,
                          cwd=Path(__file__).resolve().parent.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst = float(proc.stdout.split("WORST")[1])
    assert worst <= 1e-5


# ---- the table cache ---------------------------------------------------------------------------

class CountingGenerator(LeviathanGenerator):
    builds = 0

    def table(self, chunk_size: int = 2048) -> torch.Tensor:
        self.builds += 1
        return super().table(chunk_size)


def test_table_cache_is_built_once_and_rebuilt_when_parameters_change():
    torch.manual_seed(0)
    gen = CountingGenerator(400, 16, SMALL)
    ids = torch.randint(0, 400, (3, 7))
    gen.train()
    with torch.no_grad():
        expected = gen(ids)  # training mode: no cache
    assert gen.builds == 0
    gen.eval()
    with torch.no_grad():
        first, second = gen(ids), gen(ids[:1])
    assert gen.builds == 1
    torch.testing.assert_close(first, expected, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(second, expected[:1], rtol=1e-6, atol=1e-7)
    gen(ids)  # gradients enabled: computed directly, the cache untouched
    assert gen.builds == 1

    # an optimizer step changes parameters in place: their versions move on
    opt = torch.optim.SGD(gen.parameters(), lr=0.5)
    gen.train()
    gen(ids).pow(2).sum().backward()
    opt.step()
    gen.eval()
    with torch.no_grad():
        after = gen(ids)
        gen.train(False)
        gen(ids)
    assert gen.builds == 3  # once after the step, once more because train(False) was called
    assert not torch.allclose(after, expected)
    gen.use_table_cache = False
    with torch.no_grad():
        torch.testing.assert_close(gen(ids), after, rtol=1e-6, atol=1e-7)
    gen.use_table_cache = True

    with torch.no_grad():
        gen.codebooks.data[0, 0, 0] += 1.0  # through .data: not seen by the version check
        stale = gen(ids)
        gen.invalidate_table_cache()
        fresh = gen(ids)
    assert gen.builds == 4
    assert torch.equal(stale, after) and not torch.equal(fresh, after)

    state = {k: v.clone() for k, v in gen.state_dict().items()}
    state["out_proj"] += 0.1
    gen.load_state_dict(state)
    with torch.no_grad():
        gen(ids)
    assert gen.builds == 5


def test_table_cache_auto_skips_large_vocabularies_on_cpu():
    from leviathan_explore.generator import TABLE_CACHE_CPU_MAX_VOCAB

    gen = CountingGenerator(TABLE_CACHE_CPU_MAX_VOCAB + 1, 8, SMALL).eval()
    assert gen.use_table_cache == "auto"
    with torch.no_grad():
        gen(torch.tensor([3, 4]))
    assert gen.builds == 0
    gen.use_table_cache = True
    with torch.no_grad():
        gen(torch.tensor([3, 4]))
    assert gen.builds == 1


def test_model_eval_uses_the_table_cache_with_identical_logits():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, d_model=16, n_layers=1, n_heads=2, max_seq_len=8,
                      token_repr="leviathan", leviathan=SMALL)
    model = TransformerLM(cfg).eval()
    ids = torch.randint(0, 300, (2, 8))
    with torch.no_grad():
        cached = model(ids)
        assert model.generator._table_cache is not None
        model.generator.use_table_cache = False
        direct = model(ids)
    torch.testing.assert_close(cached, direct, rtol=1e-5, atol=1e-6)


# ---- the output head's loss --------------------------------------------------------------------

@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("chunk", [7, 50, 1000])
def test_fused_cross_entropy_matches_f_cross_entropy_values_and_gradients(reduction, chunk):
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(300, 16, requires_grad=True)
    t = torch.randint(0, 300, (50,))
    ref = F.cross_entropy(h @ w.T, t, reduction=reduction)
    gh, gw = torch.autograd.grad(ref * 3.0, (h, w))  # a non-unit upstream gradient
    out = chunked_cross_entropy(h, w, t, reduction=reduction, chunk_size=chunk)
    ch, cw = torch.autograd.grad(out * 3.0, (h, w))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # element-wise to 1e-5 of the largest entry (tiny entries are sums of cancelling terms)
    torch.testing.assert_close(ch, gh, rtol=1e-5, atol=1e-5 * float(gh.abs().max()))
    torch.testing.assert_close(cw, gw, rtol=1e-5, atol=1e-5 * float(gw.abs().max()))
    assert rel_err(ch, gh) <= 1e-5 and rel_err(cw, gw) <= 1e-5


def test_fused_cross_entropy_with_only_one_input_needing_gradients():
    torch.manual_seed(0)
    h = torch.randn(20, 8)
    w = torch.randn(40, 8, requires_grad=True)
    t = torch.randint(0, 40, (20,))
    (gw,) = torch.autograd.grad(fused_linear_cross_entropy(h, w, t, 6), (w,))
    (ref,) = torch.autograd.grad(F.cross_entropy(h @ w.T, t, reduction="sum"), (w,))
    torch.testing.assert_close(gw, ref, rtol=1e-5, atol=1e-6)


def test_fused_cross_entropy_under_bf16_autocast():
    torch.manual_seed(0)
    h = torch.randn(64, 32, requires_grad=True)
    w = (0.2 * torch.randn(500, 32)).requires_grad_()
    t = torch.randint(0, 500, (64,))
    ref = F.cross_entropy(h @ w.T, t)
    gh, gw = torch.autograd.grad(ref, (h, w))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = chunked_cross_entropy(h, w, t, chunk_size=16)
    ch, cw = torch.autograd.grad(out, (h, w))
    assert out.dtype == torch.float32 and cw.dtype == torch.float32
    assert rel_err(out, ref) <= 1e-2 and rel_err(ch, gh) <= 2e-2 and rel_err(cw, gw) <= 2e-2


def test_cross_entropy_without_gradients_and_per_position_still_match():
    torch.manual_seed(0)
    h, w, t = torch.randn(30, 8), torch.randn(90, 8), torch.randint(0, 90, (30,))
    with torch.no_grad():
        torch.testing.assert_close(chunked_cross_entropy(h, w, t, chunk_size=4), F.cross_entropy(h @ w.T, t))
    hh = h.clone().requires_grad_()
    per = chunked_cross_entropy(hh, w, t, reduction="none", chunk_size=4)
    torch.testing.assert_close(per, F.cross_entropy(h @ w.T, t, reduction="none"), rtol=1e-5, atol=1e-6)


def test_fused_cross_entropy_is_exact_for_confidently_wrong_predictions():
    # p[target] underflows float32 here: the loss must still be logsumexp - logit, not inf
    h = torch.tensor([[30.0, 0.0], [0.0, 1.0]], requires_grad=True)
    w = torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([1, 2])
    out = fused_linear_cross_entropy(h, w, t)
    ref = F.cross_entropy(h @ w.T, t, reduction="sum")
    assert torch.isfinite(out) and out > 200
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(torch.autograd.grad(out, h)[0], torch.autograd.grad(ref, h)[0])


@pytest.mark.parametrize("seed", range(6))
def test_cpu_loss_layout_equals_the_general_loop(seed):
    # the CPU float32 layout (transposed weight, one reused buffer, in-place softmax, grad_W
    # accumulated transposed) is the same arithmetic as the general loop, for random shapes
    from leviathan_explore.loss import _chunks, _cpu_float32_chunks
    g = torch.Generator().manual_seed(seed)
    n, v, d = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 90), (2, 700), (1, 40)))
    chunk = int(torch.randint(1, n + 5, (1,), generator=g))
    h, w = torch.randn(n, d, generator=g), torch.randn(v, d, generator=g)
    t = torch.randint(0, v, (n,), generator=g)
    out = {}
    for name, impl in (("general", _chunks), ("cpu", _cpu_float32_chunks)):
        losses, gh, gw = torch.empty(n), torch.empty_like(h), torch.zeros_like(w)
        impl(h, w, t, chunk, losses, gh, gw)
        out[name] = (losses, gh, gw)
    ref = F.cross_entropy(h @ w.T, t, reduction="none")
    torch.testing.assert_close(out["cpu"][0], ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(out["cpu"], out["general"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.abs().max()))
