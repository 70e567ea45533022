# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Embedding geometry
#
# A dense model learns one free vector per token. Leviathan's vectors come from a
# function of the token id's base-`b` digits, and those digits are arbitrary: before
# training, tokens that share a digit share a codebook row and so look alike whatever
# they mean. This notebook maps the trained pair of notebook 03 (its runs are reused;
# if they are missing this notebook trains them, the same way) and asks how much of
# that arbitrary digit structure is left after training and what replaced it.
#
# All maps use `analysis.embedding_maps` (PCA, UMAP, nearest neighbours, token kinds) and the
# shared figure functions of `viz`.
#
# *How to run:* from the repository root start `jupyter lab` and run the cells in
# order, top to bottom (**Run > Run All Cells** works). Set the environment variable
# `LEVIATHAN_QUICK=1` before starting Jupyter for a quick pass: every cell still runs,
# with fewer training steps and smaller samples (the short runs of notebook 03's quick mode, fewer tokens in the maps and a smaller UMAP). This is what the tests run.

# %%
import os

# LEVIATHAN_QUICK=1: the same cells with fewer steps and smaller samples (the tests use it).
QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")

import numpy as np
import pandas as pd
import torch

from leviathan_explore.analysis.embedding_maps import (mode_spread, nearest_neighbours, neighbour_agreement, pca_2d,
                                                       token_kind, umap_2d)
from leviathan_explore.analysis.embedding_sources import initial_source, run_source
from leviathan_explore.analysis.training_pair import ensure_pair, tutorial_pair
from leviathan_explore.training import frequency_buckets
from leviathan_explore.viz.geometry import (embedding_map_figure, mode_spread_figure, neighbour_agreement_figure,
                                            neighbours_table_figure)

PAIR = tutorial_pair(QUICK)
summaries = ensure_pair(PAIR)  # reads notebook 03's runs back, or trains them
for s in summaries:
    print(f"{s['name']:9s} {s['params']['total']:,} parameters, {s['steps']} steps, "
          f"validation loss {s['final_val_loss']:.4f}")

# %% [markdown]
# ## 1. The two embedding spaces
#
# `run_source` loads the Leviathan run's generator and the dense run's table, over the
# same compacted vocabulary, with the token texts and training counts.
# `initial_source` rebuilds both at **initialisation** (the trainer seeds the random
# generator before building a model, so the starting weights can be recreated exactly):
# the "before" picture.

# %%
trained = run_source(PAIR.run_dirs["leviathan"], PAIR.run_dirs["dense"])
initial = initial_source(trained, PAIR.run_dirs["leviathan"], PAIR.run_dirs["dense"])
gen = trained.generator
print(trained.description)
print(f"vocabulary {trained.vocab_size:,} ids, width {gen.d_model}, k = {trained.k} digits in base {trained.base}")

# %% [markdown]
# ## 2. Tokens to map, and their labels
#
# The maps show the most frequent tokens (rare ones have hardly been trained). Each
# token gets four labels: its **first** and **last** base-`b` digit (arbitrary
# coordinates), its **kind** (word, number, punctuation, whitespace, code, other: from
# its text), and its training **frequency**. One caveat specific to this corpus: the
# compacted vocabulary numbers ids by frequency (id 0 is the most frequent), so here the
# first digit is also a coarse frequency rank; the last digit is not.

# %%
n_tokens = 600 if QUICK else 2000
ids = trained.sample(n_tokens)
digits = gen.coordinates(torch.from_numpy(ids)).numpy()          # [n, k]
counts = trained.counts[ids]
labels = pd.DataFrame({
    "id": ids, "token": [repr(t) for t in trained.texts(ids)],
    "first digit": digits[:, 0], "last digit": digits[:, -1],
    "kind": [token_kind(t) for t in trained.texts(ids)],
    "frequency bucket": np.array(["frequent", "medium", "rare"])[frequency_buckets(trained.counts)[ids]],
    "log10 count": np.log10(counts + 1),
})
hover = [f"{t} (id {i})" for t, i in zip(labels["token"], ids)]
print(f"{len(ids)} tokens; kinds: {labels['kind'].value_counts().to_dict()}")
labels.head(8)

# %% [markdown]
# ## 3. PCA maps of the trained embeddings
#
# The two principal axes of each embedding set, coloured by how often the token occurs
# in training. The title of each map gives the share of variance its two axes explain
# (how much of the geometry a flat picture can show).

# %%
vectors = {
    ("generated", "trained"): trained.generated(ids), ("generated", "initial"): initial.generated(ids),
    ("dense table", "trained"): trained.dense_rows(ids), ("dense table", "initial"): initial.dense_rows(ids),
}
for what in ("generated", "dense table"):
    xy, explained = pca_2d(vectors[(what, "trained")])
    embedding_map_figure(xy, labels["log10 count"], colour_title="log10 count", hover=hover, categorical=False,
                         title=f"PCA of the trained {what} embeddings ({explained.sum():.0%} of the variance)",
                         axis_titles=("PC 1", "PC 2")).show()

# %% [markdown]
# ## 4. Arbitrary coordinates, before and after training
#
# The same PCA for the generated embeddings at initialisation and after training,
# coloured by the **last** digit. At initialisation tokens with the same digit share a
# codebook row, so the generator's output groups them whatever they are; training
# moves the embeddings to whatever helps prediction.

# %%
for state in ("initial", "trained"):
    xy, explained = pca_2d(vectors[("generated", state)])
    embedding_map_figure(xy, labels["last digit"], colour_title="last digit", hover=hover, categorical=True,
                         title=f"Generated embeddings, {state}: last digit ({explained.sum():.0%} of the variance)",
                         axis_titles=("PC 1", "PC 2")).show()

# %% [markdown]
# A flat picture can mislead, so measure instead: for each token, what share of its 10
# nearest neighbours (cosine similarity, in the full embedding space) carries the same
# label, divided by the share expected by chance (`analysis.embedding_maps.neighbour_agreement`).
# 1 means the label does not organise the space; larger means it does. The random
# initial dense table is the control: every label should sit near 1 there.

# %%
rows = []
for (what, state), v in vectors.items():
    for label in ("first digit", "last digit", "kind", "frequency bucket"):
        score = neighbour_agreement(v, labels[label].to_numpy(), k=10)
        rows.append({"embedding": f"{what}, {state}", "label": label, **score})
agreement = pd.DataFrame(rows)
neighbour_agreement_figure(agreement).show()
agreement.pivot(index="embedding", columns="label", values="lift").round(2)

# %% [markdown]
# The cell below prints the change training made in the generated embeddings, label by
# label: a falling lift for a digit means the arbitrary coordinates lost their grip on
# the geometry; a rising lift for kind or frequency means learned structure took over.

# %%
lift = agreement.pivot(index="embedding", columns="label", values="lift")
for label in lift.columns:
    before, after = lift.loc["generated, initial", label], lift.loc["generated, trained", label]
    print(f"{label:17s} initial {before:5.2f}x chance -> trained {after:5.2f}x "
          f"(dense table after training: {lift.loc['dense table, trained', label]:.2f}x)")

# %% [markdown]
# ## 5. A non-linear map: UMAP
#
# UMAP keeps local neighbourhoods rather than global variance, so clusters that PCA
# overlaps can separate. Here the trained generated embeddings, coloured by token kind.
# UMAP takes some seconds; the result is cached on disk next to the runs.

# %% tags=["key-figure"]
xy = umap_2d(vectors[("generated", "trained")], n_neighbors=15, seed=0, cache_dir=PAIR.runs_dir / "umap-cache")
embedding_map_figure(xy, labels["kind"], colour_title="kind", hover=hover, categorical=True,
                     title="UMAP of the trained generated embeddings, by token kind",
                     axis_titles=("UMAP 1", "UMAP 2")).show()

# %% [markdown]
# ## 6. Nearest neighbours
#
# For a few tokens, the most similar tokens of the whole vocabulary in the generated
# space and in the dense table (cosine similarity). Neighbours that look alike as text
# (other keywords, other digits, other brackets) are learned structure; neighbours
# that merely share digits with the query are the generator's starting bias.

# %%
all_ids = np.arange(trained.vocab_size)
generated_all, table_all = trained.generated(all_ids), trained.dense_rows(all_ids)
for query in (" self", " return", "1"):
    (qid,) = trained.encode(query)
    print(f"{query!r}: id {qid}, digits {gen.coordinates(torch.tensor([qid]))[0].tolist()}")
    near_gen = [(trained.text(i), s) for i, s in nearest_neighbours(generated_all, qid, k=8)]
    near_table = [(trained.text(i), s) for i, s in nearest_neighbours(table_all, qid, k=8)]
    neighbours_table_figure(query, near_gen, near_table).show()

# %% [markdown]
# ## 7. How the modes use their coordinates
#
# Each mode's sigmoid coordinates `u` must spread over (0, 1) for its B-spline functions
# to tell tokens apart. The figure shows the spread of every mode's coordinates over the
# mapped tokens after training; the cell also prints the across-token standard
# deviation before and after (near 0: the mode sees every token alike).

# %%
spread = {state: mode_spread(src.sigmoid_coordinates(ids)) for state, src in
          (("initial", initial), ("trained", trained))}
mode_spread_figure(spread["trained"]).show()
pd.DataFrame({state: sp["token_std"] for state, sp in spread.items()},
             index=[f"mode {m}" for m in spread["trained"]["mode"]]).round(4)

# %% [markdown]
# ## What to take away
#
# * At initialisation the generator's geometry is organised by the id's digits, which
#   mean nothing; the tables above measure how much of that survives training and how
#   much kind and frequency structure appears, next to the dense table that starts with
#   no structure at all.
# * The generated space is a smooth function of a few digits, so tokens cannot move
#   independently as table rows can; whether that sharing helps (rare tokens borrow
#   from frequent ones) or hurts is the question notebook 03's frequency buckets ask.
#
# Next: [05 · Scaling and effective parameters](05_scaling_and_effective_parameters.ipynb).
