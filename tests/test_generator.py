"""The reference generator: coordinates, basis, log-space product, gradients, table, autocast."""

import math

import pytest
import torch

from leviathan_explore.config import ConfigError, LeviathanConfig, integer_base
from leviathan_explore.generator import (
    LeviathanGenerator, TokenIdError, bspline_active, bspline_basis, signed_log_product,
)

SMALL = LeviathanConfig(k=3, d_seed=8, n_modes=2, n_knots=6, rank=4)


@pytest.mark.parametrize("vocab,k,expected", [
    (1, 3, 1), (2, 3, 2), (8, 3, 2), (9, 3, 3), (27, 3, 3), (28, 3, 4),
    (200_019, 3, 59), (205_379, 3, 59), (205_380, 3, 60), (10**6, 3, 100), (10**6 + 1, 3, 101),
    (1000, 1, 1000), (65_536, 2, 256), (65_537, 2, 257), (2**40, 4, 1024),
])
def test_integer_base_is_smallest_with_b_pow_k_at_least_v(vocab, k, expected):
    b = integer_base(vocab, k)
    assert b == expected
    assert b ** k >= vocab and (b == 1 or (b - 1) ** k < vocab)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_integer_base_exact_at_perfect_powers(k):
    for b in range(1, 80):
        assert integer_base(b ** k, k) == b
        assert integer_base(b ** k + 1, k) == b + 1


@pytest.mark.parametrize("vocab,k", [(1, 3), (2, 3), (27, 3), (28, 3), (1000, 2), (97, 1)])
def test_coordinates_are_a_bijection(vocab, k):
    gen = LeviathanGenerator(vocab, 8, LeviathanConfig(k=k, d_seed=4, n_modes=1, n_knots=4, rank=2))
    digits = gen.coordinates(torch.arange(vocab))
    assert digits.shape == (vocab, k)
    assert int(digits.min()) >= 0 and int(digits.max()) < gen.base
    place = torch.tensor([gen.base ** (k - 1 - j) for j in range(k)])
    assert torch.equal((digits * place).sum(-1), torch.arange(vocab))  # digits reassemble the id
    assert len({tuple(r) for r in digits.tolist()}) == vocab


def test_coordinates_of_o200k_known_value():
    gen = LeviathanGenerator(200_019, 16, LeviathanConfig(k=3, d_seed=4, n_modes=1, n_knots=4, rank=2))
    assert gen.base == 59
    assert gen.coordinates(torch.tensor([0, 58, 59, 3481, 200_018])).tolist() == [
        [0, 0, 0], [0, 0, 58], [0, 1, 0], [1, 0, 0], [57, 27, 8]]  # 200018 = 57*3481 + 27*59 + 8


def test_seed_sums_one_codebook_row_per_digit():
    gen = LeviathanGenerator(100, 8, SMALL)
    ids = torch.tensor([0, 37, 99])
    digits = gen.coordinates(ids)
    expected = sum(gen.codebooks[j, digits[:, j]] for j in range(3))
    torch.testing.assert_close(gen.seed(ids), expected)


@pytest.mark.parametrize("kappa", [3, 4, 7, 32])
def test_basis_sums_to_one_with_at_most_three_nonzeros(kappa):
    u = torch.cat([torch.rand(2000), torch.linspace(0, 1, 4 * (kappa - 1) + 1), torch.tensor([0.0, 1.0])])
    basis = bspline_basis(u, kappa)
    assert basis.shape == (len(u), kappa)
    torch.testing.assert_close(basis.sum(-1), torch.ones(len(u)))
    assert int((basis > 0).sum(-1).max()) <= 3
    assert (basis >= 0).all()


def test_basis_is_continuous_and_interpolates_knot_weights():
    kappa = 9
    u = torch.linspace(0, 1, 10_001)
    basis = bspline_basis(u, kappa)
    assert float((basis[1:] - basis[:-1]).abs().max()) < 0.01  # no jumps
    mid = bspline_basis(torch.tensor([0.5]), kappa)[0]  # a knot: 0.75 at the centre, 0.125 either side
    torch.testing.assert_close(mid[3:6], torch.tensor([0.125, 0.75, 0.125]))


@pytest.mark.parametrize("kappa", [3, 5, 32])
def test_active_basis_equals_dense_basis(kappa):
    u = torch.cat([torch.rand(500), torch.linspace(0, 1, 2 * (kappa - 1) + 1)])
    idx, w = bspline_active(u, kappa)
    dense = torch.zeros(len(u), kappa).scatter_add_(1, idx, w)
    torch.testing.assert_close(dense, bspline_basis(u, kappa))


def test_signed_log_product_equals_direct_product():
    torch.manual_seed(0)
    x = 1.0 + 0.5 * torch.randn(64, 12, 7)
    x[0, 0, 0] = -2.0
    torch.testing.assert_close(signed_log_product(x, dim=1), x.prod(dim=1), rtol=1e-5, atol=1e-6)


def test_signed_log_product_survives_where_direct_product_overflows():
    # 100 factors of 3 then 100 of -1/3: the running direct product passes 3^100 > float32 max
    x = torch.cat([torch.full((4, 100), 3.0), torch.full((4, 100), -1 / 3.0)], dim=1)
    running = torch.ones(4)
    for j in range(x.shape[1]):  # the direct float32 product, factor by factor
        running = running * x[:, j]
    assert not torch.isfinite(running).any()
    result = signed_log_product(x, dim=1)
    torch.testing.assert_close(result, torch.ones(4), rtol=1e-4, atol=0)  # (-1)^100 * 1
    x[:, -1] = 1 / 3.0  # one sign flip fewer: odd count of negatives
    torch.testing.assert_close(signed_log_product(x, dim=1), -torch.ones(4), rtol=1e-4, atol=0)


def test_gradients_reach_every_generator_parameter():
    torch.manual_seed(0)
    gen = LeviathanGenerator(500, 16, SMALL)
    out = gen(torch.randint(0, 500, (3, 7)))
    (out ** 2).sum().backward()
    for name, p in gen.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0, name


def test_dedup_is_mathematically_unchanged():
    torch.manual_seed(0)
    gen = LeviathanGenerator(300, 16, SMALL)
    ids = torch.randint(0, 20, (4, 9))  # many repeats
    grads = []
    for dedup in (True, False):
        gen.zero_grad()
        gen.dedup = dedup
        out = gen(ids)
        (out.sin()).sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in gen.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)  # summation order differs


def test_table_equals_forward_of_arange():
    torch.manual_seed(0)
    gen = LeviathanGenerator(1000, 12, SMALL)
    table = gen.table(chunk_size=97)
    with torch.no_grad():
        direct = gen(torch.arange(1000))
    assert table.shape == (1000, 12) and table.dtype == torch.float32
    torch.testing.assert_close(table, direct)


def test_mode_inputs_are_in_unit_interval():
    gen = LeviathanGenerator(1000, 12, SMALL)
    u = gen.mode_inputs(torch.arange(50).view(5, 10))
    assert u.shape == (5, 10, SMALL.n_modes, SMALL.d_seed)
    assert float(u.detach().min()) > 0 and float(u.detach().max()) < 1


def test_bf16_autocast_output_close_to_float32():
    torch.manual_seed(0)
    gen = LeviathanGenerator(2000, 32, LeviathanConfig(k=3, d_seed=32, n_modes=4, n_knots=16, rank=8))
    ids = torch.randint(0, 2000, (2, 16))
    ref = gen(ids)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(ids)
    assert out.dtype == torch.float32  # internals stay in float32
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_paper_generator_is_under_3m_parameters():
    gen = LeviathanGenerator(200_019, 512, LeviathanConfig())
    n = sum(p.numel() for p in gen.parameters())
    assert 2_000_000 < n < 3_000_000
    assert gen.codebooks.shape == (3, 59, 128)


@pytest.mark.parametrize("bad", [
    torch.tensor([0, 100]), torch.tensor([-1, 3]), torch.tensor([0.5, 1.0]), torch.tensor([True]),
])
def test_bad_token_ids_raise_token_id_error(bad):
    gen = LeviathanGenerator(100, 8, SMALL)
    with pytest.raises(TokenIdError):
        gen(bad)


@pytest.mark.parametrize("field,kwargs", [
    ("leviathan.k", dict(k=0)), ("leviathan.n_knots", dict(n_knots=2)), ("leviathan.d_seed", dict(d_seed=0)),
    ("leviathan.rank", dict(rank=-1)), ("leviathan.n_modes", dict(n_modes=1.5)),
])
def test_bad_generator_settings_name_the_field(field, kwargs):
    with pytest.raises(ConfigError) as exc:
        LeviathanConfig(**kwargs).validate()
    assert exc.value.field == field
    assert field in str(exc.value)
