"""Write the tutorial notebooks in notebooks/ from the cell texts below.

    python scripts/make_notebooks.py           # (re)write every notebook
    python scripts/make_notebooks.py --check   # exit 1 if a committed notebook differs

The notebooks are committed without outputs; editing them here keeps the diff
readable and the cell ids stable. Each code cell follows a markdown cell that
says what it shows and why it matters; every number the prose states is either
printed by a cell above it or marked as the paper's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from textwrap import dedent

import nbformat

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
KEY_FIGURE_TAG = "key-figure"

RUN_NOTE = """
*How to run:* from the repository root start `jupyter lab` and run the cells in
order, top to bottom (**Run > Run All Cells** works). Set the environment variable
`LEVIATHAN_QUICK=1` before starting Jupyter for a quick pass: every cell still runs,
with fewer training steps and smaller samples ({quick}). This is what the tests run.
"""

QUICK_CELL = """
import os

# LEVIATHAN_QUICK=1: the same cells with fewer steps and smaller samples (the tests use it).
QUICK = os.environ.get("LEVIATHAN_QUICK", "0") == "1"
print("quick mode" if QUICK else "full mode")
"""


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(dedent(text).strip())


def code(text: str, key_figure: bool = False) -> nbformat.NotebookNode:
    """A code cell; ``key_figure`` tags the cell whose first figure docs/notebooks/ shows
    (scripts/render_notebook_figures.py renders it from a full run)."""
    cell = nbformat.v4.new_code_cell(dedent(text).strip())
    if key_figure:
        cell.metadata["tags"] = [KEY_FIGURE_TAG]
    return cell


def setup(imports: str) -> nbformat.NotebookNode:
    return code(dedent(QUICK_CELL).strip() + "\n\n" + dedent(imports).strip())


def intro(title: str, body: str, quick: str) -> nbformat.NotebookNode:
    return md(f"# {title}\n\n{dedent(body).strip()}\n\n{dedent(RUN_NOTE).strip().format(quick=quick)}")


# ---- 01 -------------------------------------------------------------------------------------------

def where_the_parameters_go() -> list:
    return [
        intro("01 · Where the parameters go", """
        A language model turns each token id into a vector by looking up a row of an
        **embedding table** with one row of width `D` per vocabulary entry: `V x D`
        parameters. A decoder layer costs about `12 D^2`. With a modern vocabulary
        (the paper's `o200k_base` has about 200k tokens, PAPER.md) the table is the largest
        single block of a small model, and Leviathan's claim starts here: those parameters
        are worth less than parameters in the body.

        This notebook only counts. It uses `params.count_params`, the one place this
        project counts parameters (tested to equal the real modules' parameter counts).
        """, quick="nothing here is slow, so both modes compute the same"),
        setup("""
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
        """),

        md("""
        ## 1. Three real tokenizers

        The vocabulary size `V` is a property of the tokenizer. The next cell loads the
        three tokenizers this project ships (they work offline), prints their vocabulary
        sizes and how many tokens each needs for the same sentence: a larger vocabulary
        spends fewer tokens on a text, which is why recent models chose large ones. The last
        column checks that the sizes match `config.TOKENIZER_VOCAB`, which the counting
        below uses without loading a tokenizer.
        """),
        code("""
        sentence = "Scaling-law analyses usually count every parameter as equal."
        rows = []
        for name in TOKENIZER_NAMES:
            tok = get_tokenizer(name)
            rows.append({"tokenizer": name, "vocabulary V": tok.n_vocab,
                         "tokens for the sentence": len(tok.encode(sentence)),
                         "matches TOKENIZER_VOCAB": tok.n_vocab == TOKENIZER_VOCAB[name]})
        pd.DataFrame(rows).set_index("tokenizer")
        """),

        md("""
        ## 2. The paper's example: `paper-109m`

        The `paper-109m` preset is the paper's small model: the `o200k_base` vocabulary,
        width 512, 6 layers. The paper says that at this size one embedding table is
        already about 102M parameters, more than the whole transformer body of a 6-layer
        model (the paper's figure). The next cell counts each block: compare the
        `embedding` and `body` lines. The dense baseline here is untied, so the output head
        is a second `V x D` matrix of the same size.
        """),
        code("""
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
        """),

        md("""
        ## 3. Dense against Leviathan at this size

        Leviathan replaces only the **input** table with a small generator; the output head
        stays a dense `V x D` matrix. Two comparisons follow from that (PAPER.md):

        * **iso-body**: the same body, so Leviathan has far fewer parameters;
        * **isoparametric**: Leviathan gets its parameters back as extra layers until the
          totals match.

        The table and the stacked bars below show where each model's parameters sit.
        """),
        code("""
        report = comparison(dense, by="depth")
        print(format_params_report(report, title="paper-109m"))
        allocation_bars(report).show()
        """),

        md("""
        The paper's iso-body dense baseline **ties** its table to the head, so only one
        `V x D` block is counted. The same comparison with a tied dense model changes the
        isoparametric depth a lot: with the head shared, the dense total is smaller, while
        the Leviathan model keeps its own untied head, so it gains no layers and may have to
        give some up (compare the layer counts of the two reports). The paper reports a
        6-layer 109M dense model against a 52-layer 108.5M Leviathan (the paper's numbers);
        its exact body sizes (feed-forward width in particular) are not public, so the layer
        counts printed here follow this project's LLaMA rule and differ.
        """),
        code("""
        tied_report = comparison(preset("paper-109m", tie_embeddings=True), by="depth")
        print(format_params_report(tied_report, title="paper-109m, tied dense"))
        """),

        md("""
        ## 4. Across widths and depths

        The table grows like `V * D` and the body like `L * D^2`, so the table's share falls
        as models get wider and deeper, and it falls more slowly for a bigger vocabulary.
        The next cell counts a grid of widths and depths for the three tokenizers (heads of
        width 64) and shows the input table's share of all parameters (dense, untied).
        """),
        code("""
        widths, depths = (256, 512, 1024, 2048), (4, 8, 16, 32)
        grid = tuple((d, n, d // 64) for d in widths for n in depths)
        grid_curve = embedding_share_curve(ladder=grid)
        share_table = grid_curve.pivot_table(index=["tokenizer", "d_model"], columns="n_layers",
                                             values="embedding_share", sort=False)
        share_table.map("{:.0%}".format)
        """),

        md("""
        The same share along a ladder of GPT-style model sizes (each step wider and deeper),
        against the total parameter count, with the `paper-109m` point marked. Hover over a
        point for its width and depth.
        """),
        code("""
        curve = embedding_share_curve()
        embedding_share_figure(curve, paper=paper_point()).show()
        """, key_figure=True),

        md("""
        How large must a model be before its input table falls under 30% of it? The next cell
        prints, for each tokenizer, the smallest model of the ladder where it does.
        """),
        code("""
        THRESHOLD = 0.30
        for name, rows in curve.sort_values("total").groupby("tokenizer", sort=False):
            below = rows[rows["embedding_share"] < THRESHOLD]
            if below.empty:
                print(f"{name:12s} the table stays above {THRESHOLD:.0%} on the whole ladder")
            else:
                r = below.iloc[0]
                print(f"{name:12s} under {THRESHOLD:.0%} from {r['total'] / 1e6:,.0f}M parameters "
                      f"(width {r['d_model']}, {r['n_layers']} layers): {r['embedding_share']:.1%}")
        """),

        md("""
        ## 5. Try it: the allocation chart with sliders

        Move the sliders to change the tokenizer, width and depth of the dense model (heads
        of width 64); the chart redraws the dense model, its iso-body Leviathan and its
        isoparametric Leviathan with the paper's generator settings. This needs a running
        kernel; the static chart right after it shows the same picture for the sliders'
        starting values.
        """),
        code("""
        GENERATOR = asdict(LeviathanConfig())  # the paper's settings: k=3, d_seed=128, 8 modes, 32 knots


        def show_allocation(tokenizer="o200k_base", d_model=512, n_layers=6, tied=False):
            report = allocation_report(vocab_size=TOKENIZER_VOCAB[tokenizer], d_model=d_model, n_layers=n_layers,
                                       n_heads=d_model // 64, tied=tied, generator=GENERATOR)
            d = report["dense"]
            print(f"dense: {d['total']:,} parameters, input table {d['embedding'] / d['total']:.1%}, "
                  f"head {d['head'] / d['total']:.1%}")
            allocation_bars(report).show()


        widgets.interact(
            show_allocation,
            tokenizer=widgets.Dropdown(options=list(TOKENIZER_VOCAB), value="o200k_base"),
            d_model=widgets.IntSlider(value=512, min=128, max=2048, step=128, continuous_update=False),
            n_layers=widgets.IntSlider(value=6, min=1, max=48, continuous_update=False),
            tied=widgets.Checkbox(value=False, description="tie dense table and head"),
        );
        """),
        md("""
        The static equivalent: the chart for the sliders' starting values (`o200k_base`,
        width 512, 6 layers, untied), which is the `paper-109m` configuration of section 3.
        """),
        code("""
        show_allocation("o200k_base", 512, 6, False)
        """),

        md("""
        ## What to take away

        * With the 200k vocabulary, the input table (and the untied head, of the same size) are
          the largest blocks of every small model above; Leviathan's generator replaces the
          input table with a couple of million parameters (notebook 02 counts them).
        * "Equal parameters" then means very different models: the isoparametric Leviathan
          spends the freed budget on depth, so equal parameters is not equal compute.

        Next: [02 · Anatomy of the generator](02_anatomy_of_the_generator.ipynb) follows one
        token id through the generator that replaces the table.
        """),
    ]


# ---- 02 -------------------------------------------------------------------------------------------

def anatomy_of_the_generator() -> list:
    return [
        intro("02 · Anatomy of the generator", """
        Leviathan replaces the embedding table with a function of the token id. This
        notebook follows **one token** through the generator's four stages (PAPER.md):

        1. compositional coordinates: the id written in base `b`, one codebook row per digit,
           summed into a seed `z`;
        2. seed projection per mode: `u_m = sigmoid(LN_m(W_m z) / 2)`, coordinates in (0, 1);
        3. separable B-spline modes: each coordinate expanded in a quadratic B-spline basis,
           and the product over coordinates `Psi_m`;
        4. projection: `e(i) = sum_m Psi_m W_out_m`.

        The generator here has the paper's settings over the `o200k_base` vocabulary at width
        512, freshly initialised: this notebook is about the computation; notebook 04 looks
        at trained weights. Every stage is computed by the library
        (`analysis.anatomy.trace_token` calls the generator's own stage methods).
        """, quick="a smaller batch of ids for the fast-path comparison"),
        setup("""
        import inspect
        import json.decoder
        from pathlib import Path

        import numpy as np
        import pandas as pd
        import torch

        from leviathan_explore.analysis.anatomy import bspline_curves, tokenize, trace_token
        from leviathan_explore.analysis.geometry import untrained_source
        from leviathan_explore.analysis.tutorial import mode_factors
        from leviathan_explore.benchmark import MATCH_TOLERANCE, bench_generator, make_plan
        from leviathan_explore.config import CPU_GENERATOR, LeviathanConfig
        from leviathan_explore.data import get_tokenizer
        from leviathan_explore.generator import LeviathanGenerator, bspline_basis, signed_log_product
        from leviathan_explore.params import generator_params
        from leviathan_explore.viz.anatomy import (bspline_figure, codebook_figure, embedding_figure,
                                                   mode_features_figure, sigmoid_figure)

        _ = torch.manual_seed(0)  # the same untrained weights on every run
        """),

        md("""
        ## The generator and what it costs

        The next cell builds the generator (seeded, so the numbers repeat) and prints its
        settings and its parameters stage by stage, next to the `V x D` table it replaces.
        `base` is `b = ceil(V^(1/k))`, the smallest base with `b^k >= V`.
        """),
        code("""
        source = untrained_source("o200k_base", d_model=512, generator=LeviathanConfig(), seed=0)
        gen = source.generator
        print(gen)
        stages = generator_params(gen.vocab_size, gen.d_model, gen.cfg)
        costs = pd.Series({**stages, "generator total": sum(stages.values()),
                           "table it replaces (V x D)": gen.vocab_size * gen.d_model}, name="parameters")
        costs.map("{:,}".format).to_frame()
        """),

        md("""
        ## Pick a token

        The tokenizer splits a text into ids; we follow the first one. Change `TEXT` and
        rerun from here to follow another token.
        """),
        code("""
        TEXT = " Leviathan"
        pieces = tokenize(source, TEXT)
        for piece in pieces:
            print(f"position {piece.position}: id {piece.token_id:>6}  {piece.text!r}")
        token_id = pieces[0].token_id
        trace = trace_token(source, token_id)
        print(f"following id {trace.token_id} ({trace.text!r})")
        """),

        md("""
        ## Stage 1: compositional coordinates

        The id is written in base `b` with `k` digits, most significant first. The digits are
        arbitrary: consecutive ids share their leading digits although their texts are
        unrelated, so any structure between tokens has to be learned later. The next cell
        prints the digits, checks that they spell the id, and shows the neighbours' digits.
        """),
        code("""
        k, b = gen.cfg.k, gen.base
        print(f"base b = {b}, k = {k} digits: {b}^{k} = {b ** k:,} >= V = {gen.vocab_size:,}")
        print(f"digits of {token_id}: {trace.digits.tolist()}, and "
              f"{' + '.join(f'{int(d)}*{b}^{k - 1 - j}' for j, d in enumerate(trace.digits))} "
              f"= {sum(int(d) * b ** (k - 1 - j) for j, d in enumerate(trace.digits))}")
        around = torch.tensor([token_id - 1, token_id, token_id + 1])
        for i, digits in zip(around.tolist(), gen.coordinates(around).tolist()):
            print(f"id {i:>6} {source.text(i)!r:>16}: digits {digits}")
        """),

        md("""
        Each digit position `j` has its own codebook `C_j` of `b` rows of width `d_seed`;
        the digits pick one row from each and the **seed** `z` is their sum. The heat map
        shows the three rows and the seed (one column per seed coordinate); the cell checks
        that the seed is exactly the sum.
        """),
        code("""
        codebook_figure(trace.digits, trace.codebook_rows, trace.seed).show()
        print("seed == sum of the rows:", np.allclose(trace.codebook_rows.sum(0), trace.seed))
        """),

        md("""
        ## Stage 2: sigmoid coordinates

        Each of the `M` modes maps the seed through its own dense `d_seed x d_seed` matrix, a
        layer norm and `sigmoid(x / 2)`. The layer norm keeps the coordinates spread out and
        the sigmoid puts every one of them in (0, 1), the interval the B-spline grid covers.
        The figure shows one row per mode.
        """),
        code("""
        print(f"u has shape {trace.sigmoid.shape} (modes x seed coordinates); "
              f"min {trace.sigmoid.min():.3f}, max {trace.sigmoid.max():.3f}")
        sigmoid_figure(trace.sigmoid).show()
        """),

        md("""
        ## Stage 3a: the B-spline basis

        A coordinate `u` is expanded in `kappa` quadratic B-splines on a uniform grid over
        [0, 1], normalised to sum to one. Each basis function is non-zero on three grid cells
        only, so at any `u` **at most three** are active. The figure draws the whole basis and
        marks the active functions at the first coordinate of mode 0 of our token; the cell
        checks that the dense basis has exactly those non-zero entries.
        """),
        code("""
        m, d = 0, 0
        u_value = float(trace.sigmoid[m, d])
        grid_u, basis = bspline_curves(trace.n_knots)
        bspline_figure(grid_u, basis, u_value, trace.active_index[m, d], trace.active_weight[m, d]).show()

        dense_basis = bspline_basis(torch.tensor([u_value]), trace.n_knots)[0]
        nonzero = torch.nonzero(dense_basis).flatten().tolist()
        print(f"u = {u_value:.4f}: active functions {trace.active_index[m, d].tolist()} "
              f"with weights {np.round(trace.active_weight[m, d], 4).tolist()} (sum {trace.active_weight[m, d].sum():.6f})")
        print(f"non-zero entries of the dense {trace.n_knots}-wide basis: {nonzero}")
        """, key_figure=True),

        md("""
        ## Stage 3b: the separable product

        With learned coefficients `S_m = 1 + Delta_m` (`d_seed x kappa x r`), each coordinate
        gives `r` numbers `phi[m, d, rho] = sum_g B_g(u[m, d]) S_m[d, g, rho]`, and the mode's
        features are the **product over all `d_seed` coordinates**:
        `Psi[m, rho] = prod_d phi[m, d, rho]`, a rank-`r` separable function of the seed.
        `Delta` starts random around zero, so every factor starts around one; its spread
        (`LeviathanConfig.delta_init_std`) is chosen so that the product of many factors still
        differs from token to token without vanishing or exploding. The cell prints that
        spread, computes the factors (`analysis.tutorial.mode_factors`) and checks that their
        product is the mode feature the generator returned.
        """),
        code("""
        print(f"Delta starts with standard deviation {gen.cfg.delta_init_std:.3f}")
        u = torch.from_numpy(trace.sigmoid)
        phi = mode_factors(gen, u)                                   # [M, d_seed, r]
        print(f"phi has shape {tuple(phi.shape)}; factors range over [{phi.min():.3f}, {phi.max():.3f}]")
        psi = signed_log_product(phi, dim=-2)                        # [M, r]
        print("product of the factors == the generator's Psi:",
              torch.allclose(psi, torch.from_numpy(trace.mode_features), rtol=1e-5, atol=1e-7))
        mode_features_figure(trace.mode_features).show()
        """),

        md("""
        Why a sum of logarithms? A product of 128 factors is computed as `sign * exp(sum log|phi|)`
        with a separate count of negative factors. A running product in float32 breaks as
        soon as a **partial** product leaves float32's range, even when the final result is
        ordinary. A small example: four factors of `1e20` and four of `1e-20`, whose product is 1.
        """),
        code("""
        factors = torch.tensor([1e20] * 4 + [1e-20] * 4)
        print("running product in float32:", torch.prod(factors).item())
        print("log-magnitude product:     ", signed_log_product(factors, dim=0).item())
        """),

        md("""
        ## Stage 4: projection

        Each mode's `r` features are projected to width `D` by `W_out_m` and the modes are
        summed: `e(i)` enters the residual stream exactly where the table row would have.
        The figure compares it with a dense table row at initialisation: both are untrained,
        so only their scales are comparable (the cell prints both standard deviations).
        """),
        code("""
        print(f"e(i) has {trace.embedding.shape[0]} entries, standard deviation {trace.embedding.std():.4f}; "
              f"the table row's is {trace.table_row.std():.4f}")
        embedding_figure(trace.embedding, trace.table_row).show()
        """),

        md("""
        ## `table()` equals the forward pass

        At inference the generator can be evaluated once for the whole vocabulary and kept as
        a table (`generator.table()`, computed a chunk of ids at a time). For this to be
        an exact replacement, row `i` of the table must equal the forward pass on id `i`. The
        check runs on a generator with the CPU-sized settings over a vocabulary the size of
        notebook 03's compacted one, so that every id can be checked in a moment; the code is
        the same at any size. The
        forward pass runs in training mode with gradients on, as in training, on the reference
        path.
        """),
        code("""
        small = LeviathanGenerator(4097, 64, LeviathanConfig(**CPU_GENERATOR))
        small.impl = "reference"
        all_ids = torch.arange(small.vocab_size)
        table = small.table()                   # [V, D]: chunks of ids, no gradient
        forward = small(all_ids)                # [V, D]: the training-time forward pass
        print(f"table {tuple(table.shape)}, forward {tuple(forward.shape)}, "
              f"largest difference {(table - forward).abs().max().item():.2e}")
        """),

        md("""
        ## What the fast path changes, and why it computes the same thing

        The reference path above builds the dense `kappa`-wide basis for every coordinate, a
        tensor of `ids x M x d_seed x kappa` numbers, and multiplies it into the coefficients.
        Since only three basis functions are non-zero at any `u`, the fast paths
        (`kernels.py`) gather just those three coefficient rows and weight them: the same sum
        without its zero terms, so the result agrees up to float32 rounding. The "fused" path
        also recomputes `phi` in the backward pass instead of storing it. Independently, the
        forward pass evaluates the generator **once per distinct id** in a batch and gathers
        the rows back into place.

        The next cell runs the library's benchmark of the paper-sized generator on real token
        ids (the start of a Python standard-library file): forward + backward of an
        `nn.Embedding`, the reference path and each fast path, with their errors against the
        reference.
        """),
        code("""
        tok = get_tokenizer("o200k_base")
        n_positions = 128 if QUICK else 1024
        code_text = Path(inspect.getsourcefile(json.decoder)).read_text(encoding="utf-8")
        ids = torch.tensor(tok.encode(code_text)[:n_positions])
        plan = make_plan("cpu", quick=QUICK, repeats=1 if QUICK else None)
        bench = bench_generator(gen.vocab_size, gen.d_model, gen.cfg, ids, plan, torch.device("cpu"))
        print(f"{bench['positions']} positions, {bench['distinct_ids']} distinct ids: the generator runs "
              f"{bench['distinct_ids']} times, not {bench['positions']}")
        pd.DataFrame(bench["impls"]).T[["median_s", "embeddings_per_s", "rel_err_forward", "rel_err_grads"]]
        """),

        md("""
        Read the table: `rel_err_forward` and `rel_err_grads` are the norm-relative
        differences from the reference for the output and for the worst parameter gradient;
        `median_s` is the time of one forward + backward on this machine (the `embedding`
        row is a plain table lookup: the speed Leviathan gives up). The next cell prints the
        tolerance under which the library counts a fast path as matching (float32 sums of
        thousands of terms in a different order differ at about this level), and the
        fastest matching path's speed against the reference and the table. Timings on a
        busy machine vary from run to run; the errors do not.
        """),
        code("""
        print(f"a fast path matches when both errors are <= {MATCH_TOLERANCE:g}")
        print(f"fastest matching path: {bench['fastest_matching']}; time of the reference / its time = "
              f"{bench['speedup_vs_reference']:.2f}; its time / the table lookup's time = "
              f"{1 / bench['ratio_vs_embedding']:.1f}")
        """),

        md("""
        At inference there is no gradient, so the generator keeps its `table()` and looks rows
        up (the table cache): after the first call, generating costs what a table costs. The
        cell times two calls on the small generator in evaluation mode and checks the rows.
        """),
        code("""
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
        """),

        md("""
        ## What to take away

        * The id's digits are arbitrary; the generator's structure (a sum of codebook rows,
          per-mode sigmoid coordinates, a separable product of smooth 1-D functions) is what
          lets it learn a geometry with a few million parameters.
        * The whole vocabulary can be exported as a table that equals the forward pass, so
          inference can cost what a dense model's costs.
        * The fast path is the same arithmetic with the zero terms skipped.

        Next: [03 · Train dense vs Leviathan](03_train_dense_vs_leviathan.ipynb).
        """),
    ]


# ---- 03 -------------------------------------------------------------------------------------------

def train_dense_vs_leviathan() -> list:
    return [
        intro("03 · Train dense vs Leviathan", """
        Counting (01) and tracing (02) say what Leviathan is; training says what it does.
        This notebook builds the embedded corpus (the Python standard library, which every
        Python installation has, so nothing is downloaded), trains the CPU-sized dense model
        and its **isoparametric** Leviathan on exactly the same batches, and compares their
        loss curves and their losses on frequent and rare tokens.

        The runs are saved under `runs/notebooks/`; notebook 04 studies their embeddings
        (and trains them itself if you open it first).
        """, quick="a smaller corpus, shorter sequences and far fewer training steps"),
        setup("""
        import numpy as np
        import pandas as pd

        from leviathan_explore.analysis.tutorial import ensure_corpus, run_curves, tutorial_pair
        from leviathan_explore.data import describe_manifest, load_token_data
        from leviathan_explore.params import comparison
        from leviathan_explore.report import format_params_report
        from leviathan_explore.training import (TrainConfig, build_model_config, compare, format_comparison,
                                                frequency_buckets, unigram_entropy)
        from leviathan_explore.training.evaluation import BUCKET_EDGES
        from leviathan_explore.viz.allocation import allocation_bars
        from leviathan_explore.viz.training import bucket_losses_figure, loss_curves_figure

        PAIR = tutorial_pair(QUICK)
        print(f"corpus folder: {PAIR.data_dir}\\nruns folder:   {PAIR.runs_dir}")
        """),

        md("""
        ## 1. The corpus

        Documents are the standard library's `.py` files and its help topics, tokenized with
        `o200k_base` (the paper's tokenizer) and separated by an end-of-text id; a small share
        of the documents is held out for validation. A CPU-sized model cannot afford the full
        vocabulary, so the corpus is **compacted**: the few thousand most frequent ids are
        kept and every other id becomes one unknown id. The next cell builds the corpus
        the first time (with a progress bar) and reuses it afterwards, then describes it:
        tokens, documents, and the vocabulary before and after compaction.
        """),
        code("""
        manifest = ensure_corpus(PAIR.data_dir, **PAIR.corpus)
        print(describe_manifest(manifest))
        print(f"validation    {manifest['val_fraction']:.0%} of the documents, chosen by a seeded hash")
        """),

        md("""
        What the model sees: the next cell decodes the first training tokens back to text,
        and measures how often the unknown id occurs (the price of compaction).
        """),
        code("""
        data = load_token_data(PAIR.data_dir)
        print(repr(data.decode(data.train[:60].tolist())))
        counts = data.token_counts()
        unk = manifest["unk_id"]
        print(f"\\nvocabulary {data.vocab_size:,} ids; the unknown id {unk} is {counts[unk] / counts.sum():.2%} "
              f"of the training tokens")
        """),

        md("""
        The trainer reports the validation loss split by how frequent the **target** token
        is in training: the most frequent ids that together make up a first share of all
        training tokens are *frequent*, the next ones up to a second share *medium*, the rest
        *rare* (the cell prints both shares). A generator shares its parameters across ids,
        so if it helps or hurts anywhere it should show on the rare ones. The cell prints how
        many ids fall in each bucket, and the unigram entropy: the loss of a model that knows
        token frequencies but no context, the line a language model must get under.
        """),
        code("""
        print(f"bucket edges: frequent up to {BUCKET_EDGES[0]:.0%} of the training tokens, "
              f"medium up to {BUCKET_EDGES[1]:.0%}, rare beyond")
        buckets = frequency_buckets(counts)
        sizes = pd.Series({name: int((buckets == i).sum()) for i, name in enumerate(("frequent", "medium", "rare"))},
                          name="ids in bucket")
        print(sizes.to_string())
        entropy = unigram_entropy(counts)
        print(f"unigram entropy: {entropy:.3f} nats per token")
        """),

        md("""
        ## 2. The two models

        The `cpu-tiny` preset is the dense model; its Leviathan counterpart replaces the input
        table with a generator (the paper's structure with smaller widths) and spends the
        parameters it saves on extra layers until the totals match: the isoparametric match
        the trainer applies (`training.build_model_config`). Both have the same output head.
        """),
        code("""
        settings = dict(PAIR.train)
        dense_cfg = build_model_config(TrainConfig(arch="dense", preset=settings["preset"]), data.vocab_size)
        report = comparison(dense_cfg, by="depth")
        print(format_params_report(report, title=f"{settings['preset']}, compacted vocabulary"))
        allocation_bars(report).show()
        """),

        md("""
        ## 3. Train both on the same batches

        `training.compare` trains the dense model, then the Leviathan model, with identical
        settings and seed, so both see the same batches in the same order. The settings are
        printed first. Each run shows a progress bar; on two CPU cores expect a few minutes
        in full mode. Runs that already finished in this folder are read back instead of
        retrained (delete the runs folder printed above to train again).
        """),
        code("""
        print(settings)
        summaries = compare(data_dir=PAIR.data_dir, out_dir=PAIR.runs_dir, resume=True, **settings)
        dense, leviathan = summaries
        print(format_comparison(summaries))
        """),

        md("""
        ## 4. Loss curves

        Training loss every few steps (thin lines) and validation loss at each evaluation
        (markers), against the number of optimizer steps. The dashed horizontal level to
        compare with is the unigram entropy printed in section 1.
        """),
        code("""
        curves = {"dense": run_curves(PAIR.run_dirs["dense"]),
                  "Leviathan isoparametric": run_curves(PAIR.run_dirs["leviathan"])}
        fig = loss_curves_figure(curves)
        fig.add_hline(y=entropy, line_dash="dash", line_color="grey", annotation_text="unigram entropy")
        fig.show()
        """, key_figure=True),

        md("""
        ## 5. Loss by token frequency

        The final validation loss of each model on frequent, medium and rare targets, and
        the difference (Leviathan minus dense; negative means Leviathan is better there).
        """),
        code("""
        bucket_losses_figure({"dense": dense["bucket_losses"],
                              "Leviathan isoparametric": leviathan["bucket_losses"]}).show()
        diff = pd.DataFrame({"dense": dense["bucket_losses"], "Leviathan": leviathan["bucket_losses"]})
        diff["Leviathan - dense"] = diff["Leviathan"] - diff["dense"]
        diff.round(4)
        """),

        md("""
        ## 6. What this run shows, and what to expect

        The next cell states the outcome of this run in numbers: the final validation losses,
        how far each is under the unigram entropy, and the throughput cost of the generator
        and the extra depth.
        """),
        code("""
        gap = leviathan["final_val_loss"] - dense["final_val_loss"]
        print(f"final validation loss: dense {dense['final_val_loss']:.4f}, Leviathan {leviathan['final_val_loss']:.4f} "
              f"({'Leviathan lower' if gap < 0 else 'dense lower'} by {abs(gap):.4f} nats)")
        for s in summaries:
            print(f"  {s['name']:9s} is {entropy - s['final_val_loss']:.3f} nats under the unigram entropy "
                  f"after {s['tokens_seen']:,} tokens")
        ratio = leviathan["mean_tokens_per_s"] / dense["mean_tokens_per_s"]
        print(f"throughput: Leviathan trains at {ratio:.0%} of the dense model's tokens/s "
              f"({leviathan['model_config']['n_layers']} layers against {dense['model_config']['n_layers']})")
        """),

        md("""
        How to read this. These are models of well under a million parameters trained for a
        few minutes on one small corpus: the losses are far from converged, one seed is one
        sample, and the difference between the two models can be of either sign and of the
        order of the run-to-run noise. The paper trained from about 60M to 410M parameters on
        the Pile and reports (the paper's numbers) that the isoparametric Leviathan has lower
        validation loss at every scale it studied, behaving like a dense model with 1.47x to
        2.11x more parameters, at a training-throughput cost of 48-71% at equal parameters,
        mostly from the extra depth. The throughput line above is this machine's version of
        that cost (timings on a shared machine move with its load; the losses do not).
        Whether the loss advantage appears at CPU scale is what the sweep of
        notebook 05 measures with several sizes and a learning-rate search per model.

        Next: [04 · Embedding geometry](04_embedding_geometry.ipynb) looks inside the two
        trained models' embeddings.
        """),
    ]


# ---- 04 -------------------------------------------------------------------------------------------

def embedding_geometry() -> list:
    return [
        intro("04 · Embedding geometry", """
        A dense model learns one free vector per token. Leviathan's vectors come from a
        function of the token id's base-`b` digits, and those digits are arbitrary: before
        training, tokens that share a digit share a codebook row and so look alike whatever
        they mean. This notebook maps the trained pair of notebook 03 (its runs are reused;
        if they are missing this notebook trains them, the same way) and asks how much of
        that arbitrary digit structure is left after training and what replaced it.

        All maps use `analysis.geometry` (PCA, UMAP, nearest neighbours, token kinds) and the
        shared figure functions of `viz`.
        """, quick="the short runs of notebook 03's quick mode, fewer tokens in the maps and a smaller UMAP"),
        setup("""
        import numpy as np
        import pandas as pd
        import torch

        from leviathan_explore.analysis.geometry import (mode_spread, nearest_neighbours, pca_2d, run_source,
                                                         token_kind, umap_2d)
        from leviathan_explore.analysis.tutorial import (ensure_pair, initial_source, neighbour_agreement,
                                                         tutorial_pair)
        from leviathan_explore.training import frequency_buckets
        from leviathan_explore.viz.geometry import embedding_map_figure, mode_spread_figure, neighbours_table_figure
        from leviathan_explore.viz.notebook_figures import neighbour_agreement_figure

        PAIR = tutorial_pair(QUICK)
        summaries = ensure_pair(PAIR)  # reads notebook 03's runs back, or trains them
        for s in summaries:
            print(f"{s['name']:9s} {s['params']['total']:,} parameters, {s['steps']} steps, "
                  f"validation loss {s['final_val_loss']:.4f}")
        """),

        md("""
        ## 1. The two embedding spaces

        `run_source` loads the Leviathan run's generator and the dense run's table, over the
        same compacted vocabulary, with the token texts and training counts.
        `initial_source` rebuilds both at **initialisation** (the trainer seeds the random
        generator before building a model, so the starting weights can be recreated exactly):
        the "before" picture.
        """),
        code("""
        trained = run_source(PAIR.run_dirs["leviathan"], PAIR.run_dirs["dense"])
        initial = initial_source(trained, PAIR.run_dirs["leviathan"], PAIR.run_dirs["dense"])
        gen = trained.generator
        print(trained.description)
        print(f"vocabulary {trained.vocab_size:,} ids, width {gen.d_model}, k = {trained.k} digits in base {trained.base}")
        """),

        md("""
        ## 2. Tokens to map, and their labels

        The maps show the most frequent tokens (rare ones have hardly been trained). Each
        token gets four labels: its **first** and **last** base-`b` digit (arbitrary
        coordinates), its **kind** (word, number, punctuation, whitespace, code, other: from
        its text), and its training **frequency**. One caveat specific to this corpus: the
        compacted vocabulary numbers ids by frequency (id 0 is the most frequent), so here the
        first digit is also a coarse frequency rank; the last digit is not.
        """),
        code("""
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
        """),

        md("""
        ## 3. PCA maps of the trained embeddings

        The two principal axes of each embedding set, coloured by how often the token occurs
        in training. The title of each map gives the share of variance its two axes explain
        (how much of the geometry a flat picture can show).
        """),
        code("""
        vectors = {
            ("generated", "trained"): trained.generated(ids), ("generated", "initial"): initial.generated(ids),
            ("dense table", "trained"): trained.dense_rows(ids), ("dense table", "initial"): initial.dense_rows(ids),
        }
        for what in ("generated", "dense table"):
            xy, explained = pca_2d(vectors[(what, "trained")])
            embedding_map_figure(xy, labels["log10 count"], colour_title="log10 count", hover=hover, categorical=False,
                                 title=f"PCA of the trained {what} embeddings ({explained.sum():.0%} of the variance)",
                                 axis_titles=("PC 1", "PC 2")).show()
        """),

        md("""
        ## 4. Arbitrary coordinates, before and after training

        The same PCA for the generated embeddings at initialisation and after training,
        coloured by the **last** digit. At initialisation tokens with the same digit share a
        codebook row, so the generator's output groups them whatever they are; training
        moves the embeddings to whatever helps prediction.
        """),
        code("""
        for state in ("initial", "trained"):
            xy, explained = pca_2d(vectors[("generated", state)])
            embedding_map_figure(xy, labels["last digit"], colour_title="last digit", hover=hover, categorical=True,
                                 title=f"Generated embeddings, {state}: last digit ({explained.sum():.0%} of the variance)",
                                 axis_titles=("PC 1", "PC 2")).show()
        """),

        md("""
        A flat picture can mislead, so measure instead: for each token, what share of its 10
        nearest neighbours (cosine similarity, in the full embedding space) carries the same
        label, divided by the share expected by chance (`analysis.tutorial.neighbour_agreement`).
        1 means the label does not organise the space; larger means it does. The random
        initial dense table is the control: every label should sit near 1 there.
        """),
        code("""
        rows = []
        for (what, state), v in vectors.items():
            for label in ("first digit", "last digit", "kind", "frequency bucket"):
                score = neighbour_agreement(v, labels[label].to_numpy(), k=10)
                rows.append({"embedding": f"{what}, {state}", "label": label, **score})
        agreement = pd.DataFrame(rows)
        neighbour_agreement_figure(agreement).show()
        agreement.pivot(index="embedding", columns="label", values="lift").round(2)
        """),

        md("""
        The cell below prints the change training made in the generated embeddings, label by
        label: a falling lift for a digit means the arbitrary coordinates lost their grip on
        the geometry; a rising lift for kind or frequency means learned structure took over.
        """),
        code("""
        lift = agreement.pivot(index="embedding", columns="label", values="lift")
        for label in lift.columns:
            before, after = lift.loc["generated, initial", label], lift.loc["generated, trained", label]
            print(f"{label:17s} initial {before:5.2f}x chance -> trained {after:5.2f}x "
                  f"(dense table after training: {lift.loc['dense table, trained', label]:.2f}x)")
        """),

        md("""
        ## 5. A non-linear map: UMAP

        UMAP keeps local neighbourhoods rather than global variance, so clusters that PCA
        overlaps can separate. Here the trained generated embeddings, coloured by token kind.
        UMAP takes some seconds; the result is cached on disk next to the runs.
        """),
        code("""
        xy = umap_2d(vectors[("generated", "trained")], n_neighbors=15, seed=0, cache_dir=PAIR.runs_dir / "umap-cache")
        embedding_map_figure(xy, labels["kind"], colour_title="kind", hover=hover, categorical=True,
                             title="UMAP of the trained generated embeddings, by token kind",
                             axis_titles=("UMAP 1", "UMAP 2")).show()
        """, key_figure=True),

        md("""
        ## 6. Nearest neighbours

        For a few tokens, the most similar tokens of the whole vocabulary in the generated
        space and in the dense table (cosine similarity). Neighbours that look alike as text
        (other keywords, other digits, other brackets) are learned structure; neighbours
        that merely share digits with the query are the generator's starting bias.
        """),
        code("""
        all_ids = np.arange(trained.vocab_size)
        generated_all, table_all = trained.generated(all_ids), trained.dense_rows(all_ids)
        for query in (" self", " return", "1"):
            (qid,) = trained.encode(query)
            print(f"{query!r}: id {qid}, digits {gen.coordinates(torch.tensor([qid]))[0].tolist()}")
            near_gen = [(trained.text(i), s) for i, s in nearest_neighbours(generated_all, qid, k=8)]
            near_table = [(trained.text(i), s) for i, s in nearest_neighbours(table_all, qid, k=8)]
            neighbours_table_figure(query, near_gen, near_table).show()
        """),

        md("""
        ## 7. How the modes use their coordinates

        Each mode's sigmoid coordinates `u` must spread over (0, 1) for its B-spline functions
        to tell tokens apart. The figure shows the spread of every mode's coordinates over the
        mapped tokens after training; the cell also prints the across-token standard
        deviation before and after (near 0: the mode sees every token alike).
        """),
        code("""
        spread = {state: mode_spread(src.sigmoid_coordinates(ids)) for state, src in
                  (("initial", initial), ("trained", trained))}
        mode_spread_figure(spread["trained"]).show()
        pd.DataFrame({state: sp["token_std"] for state, sp in spread.items()},
                     index=[f"mode {m}" for m in spread["trained"]["mode"]]).round(4)
        """),

        md("""
        ## What to take away

        * At initialisation the generator's geometry is organised by the id's digits, which
          mean nothing; the tables above measure how much of that survives training and how
          much kind and frequency structure appears, next to the dense table that starts with
          no structure at all.
        * The generated space is a smooth function of a few digits, so tokens cannot move
          independently as table rows can; whether that sharing helps (rare tokens borrow
          from frequent ones) or hurts is the question notebook 03's frequency buckets ask.

        Next: [05 · Scaling and effective parameters](05_scaling_and_effective_parameters.ipynb).
        """),
    ]


# ---- 05 -------------------------------------------------------------------------------------------

def scaling_and_effective_parameters() -> list:
    return [
        intro("05 · Scaling and effective parameters", """
        One training pair (03) is one noisy sample. The paper's headline is a **scaling**
        statement: fit how the dense models' validation loss falls with their size `N`,
        `L(N) = E + A * N^(-alpha)`, then ask what size a dense model would need to reach
        each Leviathan model's loss. That size is Leviathan's **effective** parameter count
        `N_eff`, and the paper reports `N_eff / N` between 1.47x and 2.11x (the paper's
        numbers).

        This notebook reads a committed sweep (several dense sizes and their isoparametric
        Leviathan models, each with its own learning-rate search), fits the law with
        bootstrap intervals, computes the multipliers and checks how much they depend on
        which dense runs the fit includes. Nothing is trained here.
        """, quick="fewer bootstrap resamples"),
        setup("""
        import json

        import numpy as np
        import pandas as pd

        from leviathan_explore.analysis.registry import load_for_fit
        from leviathan_explore.analysis.scaling import BeyondFittedRange, analyze_runs, format_scaling_report
        from leviathan_explore.analysis.scaling_curves import PAPER_MULTIPLIERS, scaling_view
        from leviathan_explore.analysis.tutorial import (fit_sensitivity, lr_search_table, multiplier_spread,
                                                         project_root)
        from leviathan_explore.viz.notebook_figures import fit_sensitivity_figure
        from leviathan_explore.viz.scaling import multiplier_table_figure, scaling_figure

        N_BOOT = 200 if QUICK else 2000
        """),

        md("""
        ## 1. The sweep

        `SWEEP_DIR` is a parameter: point it at another sweep directory (one written by
        `leviathan-explore sweep`) to analyse that one instead. The next cell prints the
        sweep's own description from its `grid.json`.
        """),
        code("""
        SWEEP_DIR = project_root() / "results" / "sweeps" / "cpu-stdlib"
        grid = json.loads((SWEEP_DIR / "grid.json").read_text())
        print(grid.get("description", "(no description)"))
        print(f"\\nsteps per run: {grid['train']['steps']}, batch {grid['train']['batch_size']} x "
              f"{grid['train']['seq_len']} tokens, learning rates tried: {grid['lr_grid']}")
        """),

        md("""
        Every model was trained at several learning rates and the one with the lowest
        validation loss was kept (a model compared at a bad learning rate says nothing about
        its architecture). The table shows the search: one row per model, one column per
        learning rate, the chosen one marked with `*`.
        """),
        code("""
        search = lr_search_table(SWEEP_DIR)
        marked = search.assign(cell=[f"{v:.4f}{'*' if sel else ''}" if np.isfinite(v) else st
                                     for v, sel, st in zip(search["val_loss"], search["selected"], search["status"])])
        marked.pivot(index="model", columns="lr", values="cell").fillna("")
        """),

        md("""
        The selected runs are what the fit uses: their sizes, how much of each model is
        table (input table + head), and their final validation losses.
        """),
        code("""
        runs = load_for_fit(SWEEP_DIR)
        overview = runs[["name", "arch", "match_by", "total", "lr", "final_val_loss"]].copy()
        overview["table + head share"] = ((runs["embedding"] + runs["head"]) / runs["total"]).map("{:.0%}".format)
        overview.sort_values(["arch", "total"]).reset_index(drop=True)
        """),

        md("""
        ## 2. The dense law and the effective parameters

        `analysis.scaling.analyze_runs` fits `L(N)` to the dense runs (non-linear least
        squares on log-loss, `N` = total parameters as in the paper), refits it on bootstrap
        resamples of the dense runs for intervals, and inverts it at each Leviathan run's
        loss. A loss at or below the fitted floor `E` has no dense equivalent under the fit:
        it is reported as beyond the fitted range, never as a number. The report below is
        what `leviathan-explore fit` prints.
        """),
        code("""
        report = analyze_runs(runs, n_boot=N_BOOT, seed=0)
        print(format_scaling_report(report.to_dict()))
        """),

        md("""
        The same on log-log axes: dense runs and the fitted law with its bootstrap band, each
        Leviathan run at its own size and (open diamond, arrow) at its effective size, and
        the band the paper's 1.47x-2.11x would put each Leviathan run in. The table
        repeats the multipliers with their intervals.
        """),
        code("""
        view = scaling_view(report)
        scaling_figure(view["dense"], view["leviathan"], view["fit"], view["paper_band"]).show()
        multiplier_table_figure(view["leviathan"]).show()
        """, key_figure=True),

        md("""
        ## 3. Against the paper's 1.47x-2.11x

        For each Leviathan run: its multiplier, its interval, and where both stand relative
        to the paper's range.
        """),
        code("""
        low, high = PAPER_MULTIPLIERS
        for r in report.leviathan:
            lo, hi = r.multiplier_ci
            interval = f"[{'-' if lo is None else f'{lo:.2f}'}, {'unbounded' if hi is None else f'{hi:.2f}'}]"
            if r.multiplier is None:
                verdict = "beyond the fitted range (its loss is below the fitted floor E)"
            elif low <= r.multiplier <= high:
                verdict = "inside the paper's range"
            else:
                verdict = f"{'below' if r.multiplier < low else 'above'} the paper's range"
            overlaps = (lo is None or lo <= high) and (hi is None or hi >= low)
            value = "-" if r.multiplier is None else f"{r.multiplier:.2f}x"
            print(f"{r.name:28s} {value:>7s} {interval:>16s}: {verdict}; interval "
                  f"{'overlaps' if overlaps else 'excludes'} {low}-{high}")
        """),

        md("""
        ## 4. How the fit depends on which points are included

        A three-parameter law through a handful of points is fragile. The next cell refits
        the dense law without each dense run in turn (leave one out; the first row keeps
        them all) and recomputes every multiplier (`analysis.tutorial.fit_sensitivity`).
        """),
        code("""
        sensitivity = fit_sensitivity(runs)
        fits = sensitivity.drop_duplicates("fit")[["fit", "n_points", "E", "A", "alpha", "error"]]
        fits.round(4).reset_index(drop=True)
        """),
        md("""
        The multipliers under each of those fits, one line per Leviathan run, with the
        paper's range shaded and 1x (no advantage) dotted; then each run's multiplier with
        all dense runs next to its range over the leave-one-out fits.
        """),
        code("""
        fit_sensitivity_figure(sensitivity).show()
        multiplier_spread(sensitivity).round(2)
        """),

        md("""
        Two other choices change the answer too: the shape of the law (the pure power law
        `L = A * N^(-alpha)` has no floor, so every loss has a dense equivalent), and what
        `N` counts (`non_embedding`: body + head + generator, leaving out the input table
        that Leviathan removed). The table lists each run's multiplier under the three
        choices.
        """),
        code("""
        def multiplier(law, loss, size):
            try:
                return law.invert(loss) / size
            except BeyondFittedRange:
                return np.nan


        non_embedding = analyze_runs(runs, x="non_embedding", n_boot=N_BOOT, seed=0)
        table = pd.DataFrame({
            "saturating, total N": [np.nan if r.multiplier is None else r.multiplier for r in report.leviathan],
            "pure power law, total N": [multiplier(report.pure_fit.fit, r.loss, r.n_params) for r in report.leviathan],
            "saturating, non-embedding N": [np.nan if r.multiplier is None else r.multiplier
                                            for r in non_embedding.leviathan],
        }, index=[r.name for r in report.leviathan])
        table.round(2)
        """),

        md("""
        ## What to take away

        * The effective-parameter multiplier is a statement about a fitted curve, so it is
          only as firm as the fit: its bootstrap interval, its sensitivity to single points
          and to the law's shape are all part of the answer, and the tables above show how
          wide they are for this sweep.
        * The paper's 1.47x-2.11x comes from models of 60M-410M parameters trained on the
          Pile. The committed sweep is a CPU-sized stand-in (its README in `SWEEP_DIR` gives
          the exact commands, hardware and discussion); a GPU grid for the paper's regime is
          in `results/sweeps/gpu-grid.json`.
        """),
    ]


NOTEBOOKS = {
    "01_where_the_parameters_go": where_the_parameters_go,
    "02_anatomy_of_the_generator": anatomy_of_the_generator,
    "03_train_dense_vs_leviathan": train_dense_vs_leviathan,
    "04_embedding_geometry": embedding_geometry,
    "05_scaling_and_effective_parameters": scaling_and_effective_parameters,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` with stable cell ids and no outputs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    nb.cells = NOTEBOOKS[name]()
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{name[:2]}-{i:02d}"
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook differs from this script")
    args = parser.parse_args(argv)
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    stale = []
    for name in NOTEBOOKS:
        path = NOTEBOOK_DIR / f"{name}.ipynb"
        text = render(name)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
            continue
        tmp = path.with_suffix(".ipynb.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        print(f"wrote {path.relative_to(NOTEBOOK_DIR.parent)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/make_notebooks.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
