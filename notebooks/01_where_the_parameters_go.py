# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Where the parameters go
#
# A language model turns each token id into a vector by looking up a row of an
# **embedding table** with one row of width `D` per vocabulary entry: `V x D`
# parameters. A decoder layer costs about `12 D^2`. With a modern vocabulary
# (the paper's `o200k_base` has about 200k tokens, [docs/method.md](../docs/method.md)) the table is the largest
# single block of a small model, and Leviathan's claim starts here: those parameters
# are worth less than parameters in the body.
#
# This notebook only counts. It uses `params.count_params`, the one place this
# project counts parameters (tested to equal the real modules' parameter counts).
#
# *How to run:* from the repository root start `jupyter lab` and run the cells in
# order, top to bottom (**Run > Run All Cells** works). Set the environment variable
# `LEVIATHAN_QUICK=1` before starting Jupyter for a quick pass: every cell still runs,
# with fewer training steps and smaller samples (nothing here is slow, so both modes compute the same). This is what the tests run.

# %%
import os

# LEVIATHAN_QUICK=1: the same cells with fewer steps and smaller samples (the tests use it).
QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

from dataclasses import asdict

import ipywidgets as widgets
import pandas as pd

from leviathan_explore.analysis.allocation import (MODEL_LADDER, allocation_report,
                                                   embedding_share_curve, paper_point)
from leviathan_explore.config import TOKENIZER_VOCAB, LeviathanConfig, preset
from leviathan_explore.data import TOKENIZER_NAMES, get_tokenizer
from leviathan_explore.params import comparison, count_params
from leviathan_explore.report import format_params_report
from leviathan_explore.viz.allocation import allocation_bars, embedding_share_figure

# %% [markdown]
# ## 1. Three real tokenizers
#
# The vocabulary size `V` is a property of the tokenizer. The next cell loads the
# three tokenizers this project ships (they work offline), prints their vocabulary
# sizes and how many tokens each needs for the same sentence: a larger vocabulary
# spends fewer tokens on a text, which is why recent models chose large ones. The last
# column checks that the sizes match `config.TOKENIZER_VOCAB`, which the counting
# below uses without loading a tokenizer.

# %%
sentence = "Scaling-law analyses usually count every parameter as equal."
rows = []
for name in TOKENIZER_NAMES:
    tok = get_tokenizer(name)
    rows.append({"tokenizer": name, "vocabulary V": tok.n_vocab,
                 "tokens for the sentence": len(tok.encode(sentence)),
                 "matches TOKENIZER_VOCAB": tok.n_vocab == TOKENIZER_VOCAB[name]})
pd.DataFrame(rows).set_index("tokenizer")

# %% [markdown]
# ## 2. The paper's example: `paper-109m`
#
# The `paper-109m` preset is the paper's small dense model as its published counts
# imply it (a reconstruction: the paper's configuration table is not public; the
# arithmetic is in [docs/method.md](../docs/method.md)): the `o200k_base` vocabulary,
# width 256, 6 layers, SwiGLU hidden 4D, untied head. The next cell counts each block:
# compare the `embedding` and `body` lines. The dense baseline here is untied, so the
# output head is a second `V x D` matrix of the same size.

# %%
dense = preset("paper-109m")
p = count_params(dense)
blocks = pd.DataFrame({"parameters": [p.embedding, p.body, p.head, p.total]},
                      index=["embedding (input table)", "body (6 layers + final norm)",
                             "head (output matrix)", "total"])
blocks["share of total"] = (blocks["parameters"] / p.total).map("{:.1%}".format)
print(f"V = {dense.vocab_size:,}, D = {dense.d_model}, {dense.n_layers} layers: "
      f"one table is V x D = {p.embedding:,} parameters, "
      f"{p.embedding / p.body:.1f}x the body")
blocks

# %% [markdown]
# ## 3. Dense against Leviathan at this size
#
# Leviathan replaces only the **input** table with a small generator; the output head
# stays a dense `V x D` matrix. Two comparisons follow from that ([docs/method.md](../docs/method.md)):
#
# * **iso-body**: the same body, so Leviathan has far fewer parameters;
# * **isoparametric**: Leviathan gets its parameters back as extra layers until the
#   totals match.
#
# The table and the stacked bars below show where each model's parameters sit.

# %%
report = comparison(dense, by="depth")
print(format_params_report(report, title="paper-109m"))
allocation_bars(report).show()

# %% [markdown]
# The paper's iso-body dense baseline **ties** its table to the head, so only one
# `V x D` block is counted. The same comparison with a tied dense model changes the
# isoparametric depth a lot: with the head shared, the dense total is smaller, while
# the Leviathan model keeps its own untied head, so it gains no layers and may have to
# give some up (compare the layer counts of the two reports). The paper reports a
# 6-layer 109M dense model against a 52-layer 108.5M Leviathan (the paper's numbers);
# the untied report above reproduces that pair within about half a per cent.

# %%
tied_report = comparison(preset("paper-109m", tie_embeddings=True), by="depth")
print(format_params_report(tied_report, title="paper-109m, tied dense"))

# %% [markdown]
# ## 4. Across widths and depths
#
# The table grows like `V * D` and the body like `L * D^2`, so the table's share falls
# as models get wider and deeper, and it falls more slowly for a bigger vocabulary.
# The next cell counts a grid of widths and depths for the three tokenizers (heads of
# width 64) and shows the input table's share of all parameters (dense, untied).

# %%
widths, depths = (256, 512, 1024, 2048), (4, 8, 16, 32)
grid = tuple((d, n, d // 64) for d in widths for n in depths)
grid_curve = embedding_share_curve(ladder=grid)
share_table = grid_curve.pivot_table(index=["tokenizer", "d_model"], columns="n_layers",
                                     values="embedding_share", sort=False)
share_table.map("{:.0%}".format)

# %% [markdown]
# The same share along a ladder of GPT-style model sizes (each step wider and deeper),
# against the total parameter count, with the `paper-109m` point marked. Hover over a
# point for its width and depth.

# %% tags=["key-figure"]
curve = embedding_share_curve()
embedding_share_figure(curve, paper=paper_point()).show()

# %% [markdown]
# How large must a model be before its input table falls under 30% of it? The next cell
# prints, for each tokenizer, the smallest model of the ladder where it does.

# %%
THRESHOLD = 0.30
for name, rows in curve.sort_values("total").groupby("tokenizer", sort=False):
    below = rows[rows["embedding_share"] < THRESHOLD]
    if below.empty:
        print(f"{name:12s} the table stays above {THRESHOLD:.0%} on the whole ladder")
    else:
        r = below.iloc[0]
        print(f"{name:12s} under {THRESHOLD:.0%} from {r['total'] / 1e6:,.0f}M parameters "
              f"(width {r['d_model']}, {r['n_layers']} layers): {r['embedding_share']:.1%}")

# %% [markdown]
# ## 5. Try it: the allocation chart with sliders
#
# Move the sliders to change the tokenizer, width and depth of the dense model (heads
# of width 64); the chart redraws the dense model, its iso-body Leviathan and its
# isoparametric Leviathan with the paper's generator settings. This needs a running
# kernel; the static chart right after it shows the same picture for the sliders'
# starting values.

# %%
GENERATOR = asdict(LeviathanConfig())  # the paper's settings: k=3, d_seed=128, 8 modes, 32 knots


def show_allocation(tokenizer="o200k_base", d_model=256, n_layers=6, tied=False):
    report = allocation_report(vocab_size=TOKENIZER_VOCAB[tokenizer], d_model=d_model, n_layers=n_layers,
                               n_heads=d_model // 64, tied=tied, generator=GENERATOR)
    d = report["dense"]
    print(f"dense: {d['total']:,} parameters, input table {d['embedding'] / d['total']:.1%}, "
          f"head {d['head'] / d['total']:.1%}")
    allocation_bars(report).show()


widgets.interact(
    show_allocation,
    tokenizer=widgets.Dropdown(options=list(TOKENIZER_VOCAB), value="o200k_base"),
    d_model=widgets.IntSlider(value=256, min=128, max=2048, step=128, continuous_update=False),
    n_layers=widgets.IntSlider(value=6, min=1, max=48, continuous_update=False),
    tied=widgets.Checkbox(value=False, description="tie dense table and head"),
);

# %% [markdown]
# The static equivalent: the chart for the sliders' starting values (`o200k_base`,
# width 256, 6 layers, untied): the `paper-109m` width and depth of section 3, with the
# SwiGLU width of LLaMA's rule (8D/3, as the sliders use) instead of the preset's 4D.

# %%
show_allocation("o200k_base", 256, 6, False)

# %% [markdown]
# ## What to take away
#
# * With the 200k vocabulary, the input table (and the untied head, of the same size) are
#   the largest blocks of every small model above; Leviathan's generator replaces the
#   input table with a couple of million parameters (notebook 02 counts them).
# * "Equal parameters" then means very different models: the isoparametric Leviathan
#   spends the freed budget on depth, so equal parameters is not equal compute.
#
# Next: [02 · Anatomy of the generator](02_anatomy_of_the_generator.ipynb) follows one
# token id through the generator that replaces the table.
