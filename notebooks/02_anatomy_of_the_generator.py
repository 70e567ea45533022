# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 02 · Anatomy of the generator
#
# Leviathan replaces the embedding table with a function of the token id. This
# notebook follows **one token** through the generator's four stages ([docs/method.md](../docs/method.md)):
#
# 1. compositional coordinates: the id written in base `b`, one codebook row per digit,
#    summed into a seed `z`;
# 2. seed projection per mode: `u_m = sigmoid(LN_m(W_m z) / 2)`, coordinates in (0, 1);
# 3. separable B-spline modes: each coordinate expanded in a quadratic B-spline basis,
#    and the product over coordinates `Psi_m`;
# 4. projection: `e(i) = sum_m Psi_m W_out_m`.
#
# The generator here has the paper's settings over the `o200k_base` vocabulary at width
# 512, freshly initialised: this notebook is about the computation; notebook 04 looks
# at trained weights. Every stage is computed by the library
# (`analysis.anatomy.trace_token` calls the generator's own stage methods).
#
# *How to run:* from the repository root start `jupyter lab` and run the cells in
# order, top to bottom (**Run > Run All Cells** works). Set the environment variable
# `LEVIATHAN_QUICK=1` before starting Jupyter for a quick pass: every cell still runs,
# with fewer training steps and smaller samples (a smaller batch of ids for the fast-path comparison). This is what the tests run.

# %%
import os

# LEVIATHAN_QUICK=1: the same cells with fewer steps and smaller samples (the tests use it).
QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

import inspect
import json.decoder
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from leviathan_explore.analysis.anatomy import bspline_curves, tokenize, trace_token
from leviathan_explore.analysis.embedding_sources import untrained_source
from leviathan_explore.bench import MATCH_TOLERANCE, bench_generator, make_plan
from leviathan_explore.config import CPU_GENERATOR, LeviathanConfig
from leviathan_explore.data import get_tokenizer
from leviathan_explore.generator import LeviathanGenerator, bspline_basis, signed_log_product
from leviathan_explore.params import generator_params
from leviathan_explore.viz.anatomy import (bspline_figure, codebook_figure, embedding_figure,
                                           mode_features_figure, sigmoid_figure)

_ = torch.manual_seed(0)  # the same untrained weights on every run

# %% [markdown]
# ## The generator and what it costs
#
# The next cell builds the generator (seeded, so the numbers repeat) and prints its
# settings and its parameters stage by stage, next to the `V x D` table it replaces.
# `base` is `b = ceil(V^(1/k))`, the smallest base with `b^k >= V`.

# %%
source = untrained_source("o200k_base", d_model=512, generator=LeviathanConfig(), seed=0)
gen = source.generator
print(gen)
stages = generator_params(gen.vocab_size, gen.d_model, gen.cfg)
costs = pd.Series({**stages, "generator total": sum(stages.values()),
                   "table it replaces (V x D)": gen.vocab_size * gen.d_model}, name="parameters")
costs.map("{:,}".format).to_frame()

# %% [markdown]
# ## Pick a token
#
# The tokenizer splits a text into ids; we follow the first one. Change `TEXT` and
# rerun from here to follow another token.

# %%
TEXT = " Leviathan"
pieces = tokenize(source, TEXT)
for piece in pieces:
    print(f"position {piece.position}: id {piece.token_id:>6}  {piece.text!r}")
token_id = pieces[0].token_id
trace = trace_token(source, token_id)
print(f"following id {trace.token_id} ({trace.text!r})")

# %% [markdown]
# ## Stage 1: compositional coordinates
#
# The id is written in base `b` with `k` digits, most significant first. The digits are
# arbitrary: consecutive ids share their leading digits although their texts are
# unrelated, so any structure between tokens has to be learned later. The next cell
# prints the digits, checks that they spell the id, and shows the neighbours' digits.

# %%
k, b = gen.cfg.k, gen.base
print(f"base b = {b}, k = {k} digits: {b}^{k} = {b ** k:,} >= V = {gen.vocab_size:,}")
print(f"digits of {token_id}: {trace.digits.tolist()}, and "
      f"{' + '.join(f'{int(d)}*{b}^{k - 1 - j}' for j, d in enumerate(trace.digits))} "
      f"= {sum(int(d) * b ** (k - 1 - j) for j, d in enumerate(trace.digits))}")
around = torch.tensor([token_id - 1, token_id, token_id + 1])
for i, digits in zip(around.tolist(), gen.coordinates(around).tolist()):
    print(f"id {i:>6} {source.text(i)!r:>16}: digits {digits}")

# %% [markdown]
# Each digit position `j` has its own codebook `C_j` of `b` rows of width `d_seed`;
# the digits pick one row from each and the **seed** `z` is their sum. The heat map
# shows the three rows and the seed (one column per seed coordinate); the cell checks
# that the seed is exactly the sum.

# %%
codebook_figure(trace.digits, trace.codebook_rows, trace.seed).show()
print("seed == sum of the rows:", np.allclose(trace.codebook_rows.sum(0), trace.seed))

# %% [markdown]
# ## Stage 2: sigmoid coordinates
#
# Each of the `M` modes maps the seed through its own dense `d_seed x d_seed` matrix, a
# layer norm and `sigmoid(x / 2)`. The layer norm keeps the coordinates spread out and
# the sigmoid puts every one of them in (0, 1), the interval the B-spline grid covers.
# The figure shows one row per mode.

# %%
print(f"u has shape {trace.sigmoid.shape} (modes x seed coordinates); "
      f"min {trace.sigmoid.min():.3f}, max {trace.sigmoid.max():.3f}")
sigmoid_figure(trace.sigmoid).show()

# %% [markdown]
# ## Stage 3a: the B-spline basis
#
# A coordinate `u` is expanded in `kappa` quadratic B-splines on a uniform grid over
# [0, 1], normalised to sum to one. Each basis function is non-zero on three grid cells
# only, so at any `u` **at most three** are active. The figure draws the whole basis and
# marks the active functions at the first coordinate of mode 0 of our token; the cell
# checks that the dense basis has exactly those non-zero entries.

# %% tags=["key-figure"]
m, d = 0, 0
u_value = float(trace.sigmoid[m, d])
grid_u, basis = bspline_curves(trace.n_knots)
bspline_figure(grid_u, basis, u_value, trace.active_index[m, d], trace.active_weight[m, d]).show()

dense_basis = bspline_basis(torch.tensor([u_value]), trace.n_knots)[0]
nonzero = torch.nonzero(dense_basis).flatten().tolist()
print(f"u = {u_value:.4f}: active functions {trace.active_index[m, d].tolist()} "
      f"with weights {np.round(trace.active_weight[m, d], 4).tolist()} (sum {trace.active_weight[m, d].sum():.6f})")
print(f"non-zero entries of the dense {trace.n_knots}-wide basis: {nonzero}")

# %% [markdown]
# ## Stage 3b: the separable product
#
# With learned coefficients `S_m = 1 + Delta_m` (`d_seed x kappa x r`), each coordinate
# gives `r` numbers `phi[m, d, rho] = sum_g B_g(u[m, d]) S_m[d, g, rho]`, and the mode's
# features are the **product over all `d_seed` coordinates**:
# `Psi[m, rho] = prod_d phi[m, d, rho]`, a rank-`r` separable function of the seed.
# `Delta` starts random around zero, so every factor starts around one; its spread
# (`LeviathanConfig.delta_init_std`) is chosen so that the product of many factors still
# differs from token to token without vanishing or exploding. The cell prints that
# spread, computes the factors (the generator's own `mode_factors`) and checks that their
# product is the mode feature the generator returned.

# %%
print(f"Delta starts with standard deviation {gen.cfg.delta_init_std:.3f}")
u = torch.from_numpy(trace.sigmoid)
with torch.no_grad():
    phi = gen.mode_factors(u)                                # [M, d_seed, r]
print(f"phi has shape {tuple(phi.shape)}; factors range over [{phi.min():.3f}, {phi.max():.3f}]")
psi = signed_log_product(phi, dim=-2)                        # [M, r]
print("product of the factors == the generator's Psi:",
      torch.allclose(psi, torch.from_numpy(trace.mode_features), rtol=1e-5, atol=1e-7))
mode_features_figure(trace.mode_features).show()

# %% [markdown]
# Why a sum of logarithms? A product of 128 factors is computed as `sign * exp(sum log|phi|)`
# with a separate count of negative factors. A running product in float32 breaks as
# soon as a **partial** product leaves float32's range, even when the final result is
# ordinary. A small example: four factors of `1e20` and four of `1e-20`, whose product is 1.

# %%
factors = torch.tensor([1e20] * 4 + [1e-20] * 4)
print("running product in float32:", torch.prod(factors).item())
print("log-magnitude product:     ", signed_log_product(factors, dim=0).item())

# %% [markdown]
# ## Stage 4: projection
#
# Each mode's `r` features are projected to width `D` by `W_out_m` and the modes are
# summed: `e(i)` enters the residual stream exactly where the table row would have.
# The figure compares it with a dense table row at initialisation: both are untrained,
# so only their scales are comparable (the cell prints both standard deviations).

# %%
print(f"e(i) has {trace.embedding.shape[0]} entries, standard deviation {trace.embedding.std():.4f}; "
      f"the table row's is {trace.table_row.std():.4f}")
embedding_figure(trace.embedding, trace.table_row).show()

# %% [markdown]
# ## `table()` equals the forward pass
#
# At inference the generator can be evaluated once for the whole vocabulary and kept as
# a table (`generator.table()`, computed a chunk of ids at a time). For this to be
# an exact replacement, row `i` of the table must equal the forward pass on id `i`. The
# check runs on a generator with the CPU-sized settings over a vocabulary the size of
# notebook 03's compacted one, so that every id can be checked in a moment; the code is
# the same at any size. The
# forward pass runs in training mode with gradients on, as in training, on the reference
# path.

# %%
small = LeviathanGenerator(4097, 64, LeviathanConfig(**CPU_GENERATOR))
small.impl = "reference"
all_ids = torch.arange(small.vocab_size)
table = small.table()                   # [V, D]: chunks of ids, no gradient
forward = small(all_ids)                # [V, D]: the training-time forward pass
print(f"table {tuple(table.shape)}, forward {tuple(forward.shape)}, "
      f"largest difference {(table - forward).abs().max().item():.2e}")

# %% [markdown]
# ## What the fast path changes, and why it computes the same thing
#
# The reference path above builds the dense `kappa`-wide basis for every coordinate, a
# tensor of `ids x M x d_seed x kappa` numbers, and multiplies it into the coefficients.
# Since only three basis functions are non-zero at any `u`, the fast paths
# (`kernels.py`) gather just those three coefficient rows and weight them: the same sum
# without its zero terms, so the result agrees up to float32 rounding. The "fused" path
# also recomputes `phi` in the backward pass instead of storing it. Independently, the
# forward pass evaluates the generator **once per distinct id** in a batch and gathers
# the rows back into place.
#
# The next cell runs the library's benchmark of the paper-sized generator on real token
# ids (the start of a Python standard-library file): forward + backward of an
# `nn.Embedding`, the reference path and each fast path, with their errors against the
# reference.

# %%
tok = get_tokenizer("o200k_base")
n_positions = 128 if QUICK else 1024
code_text = Path(inspect.getsourcefile(json.decoder)).read_text(encoding="utf-8")
ids = torch.tensor(tok.encode(code_text)[:n_positions])
plan = make_plan("cpu", quick=QUICK, repeats=1 if QUICK else None)
bench = bench_generator(gen.vocab_size, gen.d_model, gen.cfg, ids, plan, torch.device("cpu"))
print(f"{bench['positions']} positions, {bench['distinct_ids']} distinct ids: the generator runs "
      f"{bench['distinct_ids']} times, not {bench['positions']}")
pd.DataFrame(bench["impls"]).T[["median_s", "embeddings_per_s", "rel_err_forward", "rel_err_grads"]]

# %% [markdown]
# Read the table: `rel_err_forward` and `rel_err_grads` are the norm-relative
# differences from the reference for the output and for the worst parameter gradient;
# `median_s` is the time of one forward + backward on this machine (the `embedding`
# row is a plain table lookup: the speed Leviathan gives up). The next cell prints the
# tolerance under which the library counts a fast path as matching (float32 sums of
# thousands of terms in a different order differ at about this level), and the
# fastest matching path's speed against the reference and the table. Timings on a
# busy machine vary from run to run; the errors do not.

# %%
print(f"a fast path matches when both errors are <= {MATCH_TOLERANCE:g}")
print(f"fastest matching path: {bench['fastest_matching']}; time of the reference / its time = "
      f"{bench['speedup_vs_reference']:.2f}; its time / the table lookup's time = "
      f"{1 / bench['ratio_vs_embedding']:.1f}")

# %% [markdown]
# At inference there is no gradient, so the generator keeps its `table()` and looks rows
# up (the table cache): after the first call, generating costs what a table costs. The
# cell times two calls on the small generator in evaluation mode and checks the rows.

# %%
import time

small.eval()
with torch.no_grad():
    t0 = time.perf_counter()
    first = small(all_ids[:512])
    t1 = time.perf_counter()
    second = small(all_ids[:512])
    t2 = time.perf_counter()
print(f"first call {1e3 * (t1 - t0):.1f} ms (builds the table), second {1e3 * (t2 - t1):.2f} ms; "
      f"rows equal the table: {torch.equal(second, table[:512])}")

# %% [markdown]
# ## What to take away
#
# * The id's digits are arbitrary; the generator's structure (a sum of codebook rows,
#   per-mode sigmoid coordinates, a separable product of smooth 1-D functions) is what
#   lets it learn a geometry with a few million parameters.
# * The whole vocabulary can be exported as a table that equals the forward pass, so
#   inference can cost what a dense model's costs.
# * The fast path is the same arithmetic with the zero terms skipped.
#
# Next: [03 · Train dense vs Leviathan](03_train_dense_vs_leviathan.ipynb).
