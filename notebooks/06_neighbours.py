# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Leviathan's neighbours
#
# Leviathan replaces the input table with a generator: digit codebooks (stage 1), a
# projection and layer norm per mode (stage 2), separable B-spline modes (stage 3) and an
# output projection (stage 4). A reader asks at once: is it the B-spline generator that
# helps, or simply that a few shared rows replace a huge table? This notebook puts the
# generator next to the simpler ways of shrinking a table, each one module of
# `leviathan_explore/representations/` behind the same interface:
#
# * **factorised table** (ALBERT): a `V x E` table, then an `E x D` projection;
# * **codebooks only**: the generator's stage 1 alone, projected to `D` (Leviathan without
#   stages 2 and 3; the quotient-remainder embedding generalised to `k` digits);
# * **hashed embedding**: each id the sum of `h` rows of a small table chosen by `h` hashes;
# * **Leviathan ablations**: rank 1, one mode, 4 knots, no stage-2 layer norm.
#
# Section 1 counts them; section 2 follows one token through each; section 3 reads the
# committed comparison (`results/sweeps/neighbours`, its design written before it ran in
# `DESIGN.md` there), trained in the laptop study's regime and measured against its dense
# law. Nothing is trained here.
#
# *How to run:* from the repository root start `jupyter lab` and run the cells in
# order, top to bottom (**Run > Run All Cells** works). Set the environment variable
# `LEVIATHAN_QUICK=1` before starting Jupyter for a quick pass: every cell still runs,
# with fewer bootstrap resamples. This is what the tests run.

# %%
import os

# LEVIATHAN_QUICK=1: the same cells with fewer steps and smaller samples (the tests use it).
QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

import pandas as pd
import torch
from IPython.display import Markdown, display

from leviathan_explore.analysis.neighbours import format_report, neighbours_report
from leviathan_explore.analysis.training_pair import project_root
from leviathan_explore.config import preset
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import comparison
from leviathan_explore.report import REPR_LABELS
from leviathan_explore.representations.hashed import collision_rate
from leviathan_explore.viz.neighbours import neighbours_figure

N_BOOT = 100 if QUICK else 1000

# %% [markdown]
# ## 1. Where the parameters go
#
# The study's width-64 model (`cpu-16k`: 16,384 kept ids, 2 layers) with each
# representation sized as in the comparison: the factorised and hashed tables get about
# the generator's parameter budget, the codebooks model is the generator minus its
# stages 2-3. For each: the representation's stages, the same-body model's total, and how
# many layers the isoparametric model gets back.

# %%
SETTINGS = {"leviathan": {}, "factorized": {"factorized_dim": 3}, "codebooks": {},
            "hashed": {"hash_buckets": 680, "hash_functions": 2}}
rows = []
for name, extra in SETTINGS.items():
    dense = preset("cpu-16k", **extra)
    report = comparison(dense, repr=name)
    rows.append({"representation": REPR_LABELS[name],
                 "stages": ", ".join(f"{k} {v:,}" for k, v in report["representation"]["stages"].items()),
                 "same-body total": report["leviathan_isobody"]["total"],
                 "isoparametric layers": report["leviathan_isoparam"]["n_layers"],
                 "isoparametric total": report["leviathan_isoparam"]["total"]})
print(f"dense: {comparison(preset('cpu-16k'))['dense']['total']:,} parameters, 2 layers")
pd.DataFrame(rows).set_index("representation")

# %% [markdown]
# Hash collisions: two ids are indistinguishable to a hashed embedding when all their
# hashes agree. With two hashes into 680 rows there are 462,400 bucket pairs for 16,385
# ids; the count below is exact (the library enumerates every id).

# %%
for buckets, functions in [(680, 1), (680, 2), (1300, 2)]:
    print(f"{buckets} rows, {functions} hash(es): {collision_rate(16_385, buckets, functions, 0):.2%} of ids collide")

# %% [markdown]
# ## 2. One token through each representation
#
# Each module's `stages(ids)` returns its named intermediates: the codebooks model's
# digits and seed, the hashed model's buckets, the factorised table's row. The last stage
# is the vector that enters the residual stream (checked against the model's own
# `embed`).

# %%
token = torch.tensor([1234])
for name, extra in SETTINGS.items():
    if name == "leviathan":
        continue
    torch.manual_seed(0)
    model = TransformerLM(preset("cpu-16k", token_repr=name, **extra))
    stages = model.token_representation.stages(token)
    assert torch.allclose(list(stages.values())[-1], model.embed(token[None])[0])
    shown = {k: (v[0].tolist() if v.dtype == torch.long else [round(x, 3) for x in v[0, :4].tolist()] + ["..."])
             for k, v in stages.items()}
    print(f"{REPR_LABELS[name]}: {shown}")

# %% [markdown]
# ## 3. The comparison
#
# `analysis.neighbours.neighbours_report` gathers every selected run of the neighbours
# study and of the laptop study it refers to (the dense models and their law, the
# isoparametric Leviathan), by width, model and seed, and writes the interpretation from
# the numbers: whether the spline stages add anything over codebooks alone, measured
# against the seed-to-seed spread, and how each representation ranks on rare tokens.

# %%
STUDY_DIR = project_root() / "results" / "sweeps" / "neighbours"
report = neighbours_report(STUDY_DIR, n_boot=N_BOOT)
display(Markdown("\n".join(f"- {line}" for line in report["verdict"])))

# %% [markdown]
# Each model's gap to the dense model of its width (left of zero: better), the mean over
# two seeds with the range as a bar, and (diamonds) the gap on rare targets.

# %% tags=["key-figure"]
neighbours_figure(report).show()

# %% [markdown]
# Every number, per seed: the table `leviathan-explore study report results/sweeps/neighbours`
# prints.

# %%
display(Markdown(format_report(report)))

# %% [markdown]
# ## What to take away
#
# * All these representations spend a few tens of thousands of parameters where the table
#   spent a million; the comparison asks what each does with them at equal total size
#   (isoparametric) and at equal body (iso-body).
# * The answer is for this scale only: 1M training tokens, widths 32 and 64, a 16k
#   vocabulary of Python source. `results/sweeps/neighbours/README.md` states the verdict
#   with the commands and hardware that made it.
