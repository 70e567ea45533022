"""Property tests over every user boundary: configurations, token ids, bytes, command lines.

Each property states what may happen to *any* input: it works (and the result is
sane), or it is refused with the project's own error that names the bad value.
A bare ``RuntimeError``/``IndexError``/``TypeError``/``ZeroDivisionError`` from
deep inside torch, numpy or argparse is a failure.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from leviathan_explore.cli import build_parser, main
from leviathan_explore.config import ConfigError, LeviathanConfig, ModelConfig, integer_base
from leviathan_explore.generator import LeviathanGenerator, TokenIdError
from leviathan_explore.model import TransformerLM
from leviathan_explore.params import count_params, generator_params, real_param_count

def fast(max_examples: int) -> settings:
    """Few enough examples that the whole file runs in about a minute on two cores."""
    return settings(max_examples=max_examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Values a user can type into a JSON config or a Python call: the right type in
# and out of range, the wrong type, and the non-finite numbers.
nasty_values = st.one_of(
    st.integers(-3, 3), st.integers(-(2**70), 2**70), st.sampled_from([2**31, 2**63, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1e-300, 1e300, 0.5, 2.0]),
    st.booleans(), st.none(), st.text(max_size=6), st.sampled_from(["1", "table", "leviathan", "nan"]),
    st.lists(st.integers(0, 3), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _assert_names(exc: ConfigError, field: str) -> None:
    """The error names ``field`` (as its ``.field`` or in its one-line message)."""
    msg = str(exc)
    assert "\n" not in msg, msg
    assert exc.field == field or field in msg, f"{field!r} not named by {msg!r}"


# ---- model configurations ---------------------------------------------------------------------

@st.composite
def small_model_configs(draw):
    n_heads = draw(st.integers(1, 3))
    head_dim = 2 * draw(st.integers(1, 4))
    n_kv = draw(st.sampled_from([None] + [d for d in range(1, n_heads + 1) if n_heads % d == 0]))
    lev = LeviathanConfig(k=draw(st.integers(1, 4)), d_seed=draw(st.integers(1, 6)),
                          n_modes=draw(st.integers(1, 3)), n_knots=draw(st.integers(3, 7)),
                          rank=draw(st.integers(1, 4)))
    repr_ = draw(st.sampled_from(["table", "leviathan"]))
    return ModelConfig(
        vocab_size=draw(st.integers(1, 600)), d_model=n_heads * head_dim, n_layers=draw(st.integers(0, 2)),
        n_heads=n_heads, n_kv_heads=n_kv, ffn_hidden=draw(st.one_of(st.none(), st.integers(1, 24))),
        ffn_multiple_of=draw(st.integers(1, 16)), max_seq_len=draw(st.integers(1, 16)), token_repr=repr_,
        tie_embeddings=draw(st.booleans()) if repr_ == "table" else False, leviathan=lev,
    )


@fast(25)
@given(small_model_configs(), st.integers(1, 3), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_valid_model_configs_build_train_and_count_exactly(cfg, batch, seq, seed):
    torch.manual_seed(seed % 1000)
    model = TransformerLM(cfg)
    assert count_params(cfg) == real_param_count(model)
    assert count_params(cfg).total == sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (batch, seq))
    loss = model(ids, torch.randint(0, cfg.vocab_size, (batch, seq)))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model(ids).shape == (batch, seq, cfg.vocab_size)
    # the round trip through JSON-able data rebuilds the same configuration
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


MODEL_FIELDS = [f.name for f in dataclasses.fields(ModelConfig) if f.name != "leviathan"]
LEVIATHAN_FIELDS = [f.name for f in dataclasses.fields(LeviathanConfig)]


@fast(300)
@given(st.sampled_from(MODEL_FIELDS), nasty_values)
def test_any_model_setting_is_accepted_or_named(field, value):
    try:
        cfg = ModelConfig.from_dict({field: value})
    except ConfigError as exc:
        _assert_names(exc, field)
    else:
        assert cfg.validate() is cfg  # accepted values are really valid
        count_params(cfg)  # and can be counted without building


@fast(250)
@given(st.sampled_from(LEVIATHAN_FIELDS), nasty_values)
def test_any_generator_setting_is_accepted_or_named(field, value):
    try:
        cfg = ModelConfig.from_dict({"token_repr": "leviathan", "leviathan": {field: value}})
    except ConfigError as exc:
        _assert_names(exc, f"leviathan.{field}")
    else:
        assert getattr(cfg.leviathan, field) == value
        assert count_params(cfg).generator > 0


@fast(150)
@given(st.dictionaries(st.one_of(st.sampled_from(MODEL_FIELDS + ["leviathan"]), st.text(max_size=8)),
                       nasty_values, max_size=4))
def test_random_config_dicts_load_or_raise_config_error(d):
    try:
        cfg = ModelConfig.from_dict(d)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert exc.field in d or exc.field.split(".")[0] in set(d) | set(MODEL_FIELDS), exc.field
    else:
        assert cfg.validate() is cfg


@fast(100)
@given(nasty_values)
def test_from_dict_of_a_non_dict_is_a_config_error(value):
    assume(not isinstance(value, dict))
    with pytest.raises(ConfigError):
        ModelConfig.from_dict(value)


# ---- generator configurations -------------------------------------------------------------------

@st.composite
def generator_setups(draw):
    lev = LeviathanConfig(k=draw(st.integers(1, 5)), d_seed=draw(st.integers(1, 8)),
                          n_modes=draw(st.integers(1, 3)), n_knots=draw(st.integers(3, 9)),
                          rank=draw(st.integers(1, 5)),
                          spline_init_std=draw(st.sampled_from([0.0, 0.05, 0.3])))
    return draw(st.integers(1, 5000)), draw(st.integers(1, 12)), lev


@fast(40)
@given(generator_setups(), st.lists(st.integers(0, 10**6), min_size=1, max_size=12))
def test_valid_generators_embed_any_ids_and_count_exactly(setup, raw_ids):
    vocab, d_model, lev = setup
    gen = LeviathanGenerator(vocab, d_model, lev)
    b = integer_base(vocab, lev.k)
    assert b ** lev.k >= vocab and (b == 1 or (b - 1) ** lev.k < vocab)
    assert sum(p.numel() for p in gen.parameters()) == sum(generator_params(vocab, d_model, lev).values())
    ids = torch.tensor([i % vocab for i in raw_ids])
    out = gen(ids)
    assert out.shape == (len(raw_ids), d_model) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in gen.parameters())
    gen.eval()
    with torch.no_grad():  # the cached-table inference path agrees with training mode
        torch.testing.assert_close(gen(ids), out.detach(), rtol=1e-4, atol=1e-6)


@fast(120)
@given(nasty_values, nasty_values)
def test_generator_constructor_rejects_bad_sizes_by_name(vocab, d_model):
    small = LeviathanConfig(d_seed=2, n_modes=1, n_knots=3, rank=1)
    ok_vocab = isinstance(vocab, int) and not isinstance(vocab, bool) and 1 <= vocab <= 10_000
    ok_width = isinstance(d_model, int) and not isinstance(d_model, bool) and 1 <= d_model <= 64
    if ok_vocab and ok_width:
        assert LeviathanGenerator(vocab, d_model, small)(torch.tensor([vocab - 1])).shape == (1, d_model)
        return
    if (isinstance(vocab, int) and vocab > 10_000) or (isinstance(d_model, int) and d_model > 64):
        return  # valid but too big to build here
    with pytest.raises(ConfigError) as info:
        LeviathanGenerator(vocab, d_model, small)
    assert info.value.field in ("vocab_size", "d_model")


def test_generator_refuses_a_settings_dict():
    with pytest.raises(ConfigError, match="leviathan"):
        LeviathanGenerator(10, 4, {"k": 2})


# ---- token-id tensors --------------------------------------------------------------------------

VOCAB = 97
INT_DTYPES = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8, torch.uint16, torch.uint32,
              torch.uint64]
BAD_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.bool, torch.complex64]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    base = ModelConfig(vocab_size=VOCAB, d_model=8, n_layers=1, n_heads=2, max_seq_len=8,
                       leviathan=LeviathanConfig(d_seed=4, n_modes=2, n_knots=5, rank=3))
    return {"table": TransformerLM(base), "leviathan": TransformerLM(base.replace(token_repr="leviathan")),
            "tied": TransformerLM(base.replace(tie_embeddings=True))}


def _dtype_range(dtype: torch.dtype) -> tuple[int, int]:
    info = torch.iinfo(dtype)
    return max(info.min, -(2**62)), min(info.max, 2**62)


@st.composite
def id_tensors(draw, max_dim=2):
    """Integer tensors of any integer dtype, values anywhere in the dtype's range (mostly near the vocab)."""
    dtype = draw(st.sampled_from(INT_DTYPES))
    lo, hi = _dtype_range(dtype)
    ndim = max_dim if max_dim == 2 else draw(st.integers(0, max_dim))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=ndim, max_size=ndim)))
    n = math.prod(shape)
    near = st.integers(max(lo, -3), min(hi, VOCAB + 3))
    values = draw(st.lists(st.one_of(near, near, st.integers(lo, hi)), min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.int64).to(dtype).reshape(shape) if n else torch.zeros(shape, dtype=dtype)


def _in_vocab(ids: torch.Tensor) -> bool:
    if ids.numel() == 0:
        return True
    as_int = [int(v) for v in ids.reshape(-1).tolist()]
    return min(as_int) >= 0 and max(as_int) < VOCAB


@fast(150)
@given(st.sampled_from(["table", "leviathan", "tied"]), id_tensors(), st.booleans())
def test_model_takes_valid_ids_of_any_int_dtype_and_rejects_the_rest(models, kind, ids, inference):
    model = models[kind].train(not inference)
    ctx = torch.no_grad() if inference else torch.enable_grad()
    with ctx:
        if not _in_vocab(ids):
            with pytest.raises(TokenIdError):
                model(ids)
            return
        logits = model(ids)
    assert logits.shape == (*ids.shape, VOCAB) and torch.isfinite(logits).all()
    reference = models[kind](ids.long())
    torch.testing.assert_close(logits, reference)  # the dtype changes nothing


@fast(80)
@given(st.sampled_from(["table", "leviathan"]), id_tensors(), id_tensors())
def test_loss_targets_are_checked_like_inputs(models, kind, ids, targets):
    model = models[kind]
    targets = targets.reshape(-1)[: ids.numel()]
    if targets.numel() < ids.numel():
        targets = torch.cat([targets, torch.zeros(ids.numel() - targets.numel(), dtype=targets.dtype)])
    targets = targets.reshape(ids.shape)
    if not _in_vocab(ids) or not _in_vocab(targets):
        with pytest.raises(TokenIdError):
            model(ids, targets)
        return
    if ids.numel() == 0:
        with pytest.raises(ValueError, match="empty"):
            model(ids, targets)
        assert model(ids, targets, reduction="none").shape == ids.shape
        return
    loss = model(ids, targets)
    assert torch.isfinite(loss) and loss > 0


@fast(60)
@given(st.sampled_from(BAD_DTYPES), st.lists(st.integers(0, 3), min_size=0, max_size=3))
def test_non_integer_ids_raise_token_id_error(models, dtype, shape):
    ids = torch.zeros(shape, dtype=dtype)
    gen = models["leviathan"].generator
    with pytest.raises(TokenIdError, match=str(dtype).replace("torch.", "")):
        gen(ids)
    if len(shape) == 2:
        for kind in ("table", "leviathan"):
            with pytest.raises(TokenIdError):
                models[kind](ids)


@fast(60)
@given(id_tensors(max_dim=3))
def test_generator_takes_ids_of_any_shape(models, ids):
    gen = models["leviathan"].generator.train()
    if not _in_vocab(ids):
        with pytest.raises(TokenIdError):
            gen(ids)
        return
    assert gen(ids).shape == (*ids.shape, 8)


@pytest.mark.parametrize("bad", [[[1, 2]], (1, 2), 3, None, "12", torch.tensor([1, 2])])
def test_ids_that_are_not_a_2d_tensor_are_refused_by_name(models, bad):
    with pytest.raises((TokenIdError, ValueError)) as info:
        models["table"](bad)
    assert "ids" in str(info.value)


# ---- bytes through the tokenizer and the shard writer --------------------------------------------

@pytest.fixture(scope="module")
def tokenizers():
    from leviathan_explore.data import TOKENIZER_NAMES, get_tokenizer

    return {name: get_tokenizer(name) for name in TOKENIZER_NAMES}


@fast(60)
@given(st.binary(max_size=300), st.sampled_from(["o200k_base", "cl100k_base", "gpt2"]))
def test_any_bytes_decoded_as_text_round_trip_through_every_tokenizer(tokenizers, raw, name):
    tok = tokenizers[name]
    text = raw.decode("utf-8", errors="replace")
    ids = tok.encode(text)
    assert all(isinstance(i, int) and 0 <= i < tok.n_vocab for i in ids)
    assert tok.decode(ids) == text


@fast(40)
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=200),
       st.sampled_from(["o200k_base", "gpt2"]))
def test_special_token_text_is_ordinary_text(tokenizers, text, name):
    tok = tokenizers[name]
    ids = tok.encode(text + "<|endoftext|>" + text)
    assert tok.eot_id not in ids  # a corpus that quotes the separator cannot inject one
    assert tok.decode(ids) == text + "<|endoftext|>" + text


@fast(12)
@given(st.lists(st.binary(max_size=400), min_size=0, max_size=5), st.booleans(), st.integers(0, 3))
def test_random_files_through_the_shard_writer_load_back_or_are_refused(tmp_path, tokenizers, blobs, compact, seed):
    """Arbitrary bytes in .txt files: the build either writes shards that decode back to the
    documents' text, or refuses with the data layer's own one-line error."""
    from leviathan_explore.data import CorpusUnavailable, build_corpus, load_token_data

    case = tmp_path / f"case-{len(list(tmp_path.iterdir()))}"
    case.mkdir()
    for i, blob in enumerate(blobs):
        (case / f"doc{i}.txt").write_bytes(blob)
    try:
        build_corpus("files", case / "shards", glob=str(case / "*.txt"), tokenizer="gpt2",
                     compact=64 if compact else None, seed=seed, progress=False)
    except (CorpusUnavailable, ConfigError, ValueError) as exc:
        assert "\n" not in str(exc).strip() and str(exc)
        assert not (case / "shards").exists()
        return
    data = load_token_data(case / "shards", verify=True)
    stream = np.concatenate([np.asarray(data.train), np.asarray(data.val)])
    assert stream.dtype == np.uint32 and int(stream.max()) < data.vocab_size
    assert data.manifest["train_tokens"] > 0 and data.manifest["val_tokens"] > 0
    docs = [data.decode(d) for d in np.split(stream, np.flatnonzero(stream == data.eot_id) + 1) if len(d)]
    texts = sorted(d[: -len("<|endoftext|>")] if d.endswith("<|endoftext|>") else d for d in docs)
    if not compact:  # each document's text comes back exactly (order is shuffled, split by hash)
        usable = sorted(t for t in (b.decode("utf-8", errors="replace") for b in blobs) if t)
        valid = []
        for b in blobs:  # what the build keeps: valid UTF-8 (a BOM dropped), not empty
            try:
                text = b.decode("utf-8-sig")
            except UnicodeDecodeError:
                continue
            if text:
                valid.append(text)
        if data.manifest["n_documents"] == {"train": 1, "val": 1} and len(valid) == 1:
            # one document is split by position: its two parts, rejoined, are the document
            ids = [int(t) for t in stream if int(t) != data.eot_id]
            assert data.decode(ids) == usable[0] or data.decode(ids) == valid[0]
        else:
            assert all(t in usable for t in texts)


# ---- command lines -------------------------------------------------------------------------------



def _leaf_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every runnable subcommand path (('params',), ('data', 'build'), ...) and its parser."""
    out = {}

    def walk(parser, path):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[path] = parser
            return
        for name, sub in subs[0].choices.items():
            walk(sub, path + (name,))

    walk(build_parser(), ())
    return out


LEAVES = _leaf_parsers()
PATH_DESTS = {"out", "data", "dir", "grid", "run_dirs", "dataset", "glob", "runs", "runs_dir", "path"}
# Appended last (argparse keeps the last value) so that no fuzzed command starts long work:
# training never finds data, a build stops after 20000 tokens, the benchmark refuses its
# --json (a directory) before it runs; a server binds its socket and is then closed (cli_sandbox).
GUARDS = {("train",): ["--data", "EMPTY"], ("compare",): ["--data", "EMPTY"],
          ("data", "build"): ["--max-tokens", "20000"], ("bench",): ["--json", "EMPTY"]}
TEXT = st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
NUMBERS = st.sampled_from(["0", "-1", "1", "2", "3", "-0", "1e999", "nan", "inf", "-inf", "0x10", "1_000",
                           "99999999999999999999", "2.5", "1e-300", " 4", "", "٣"])
PATHS = st.sampled_from(["nonexistent", ".", "..", "/", "/dev/null", "/proc/self/status", "/proc/nope/x",
                         "afile.txt", "EMPTY", "a/b/c", "../escape", "~", "*", "**/*.txt", "afile.txt/child"])


def _values_for(action: argparse.Action):
    if action.choices:
        return st.one_of(st.sampled_from(list(action.choices)), TEXT)
    if action.dest in PATH_DESTS:
        return st.one_of(PATHS, TEXT)
    if action.type is not None:
        return st.one_of(NUMBERS, st.integers(-10, 10**6).map(str), TEXT)
    return st.one_of(TEXT, st.sampled_from(["cpu-tiny", "paper-109m", "python-stdlib", "files", "gpt2",
                                            "o200k_base", "site-packages"]))


@st.composite
def argv_for(draw, path: tuple[str, ...]):
    parser = LEAVES[path]
    actions = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
    argv = list(path)
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["option", "option", "option", "positional", "junk", "dangling"]))
        if kind == "junk":
            argv.append(draw(st.one_of(TEXT, st.sampled_from(["--", "-", "--nope", "-x", "--help=1"]))))
            continue
        if kind == "positional":
            positional = [a for a in actions if not a.option_strings]
            if positional:
                argv.append(draw(_values_for(draw(st.sampled_from(positional)))))
            continue
        optional = [a for a in actions if a.option_strings]
        if not optional:
            continue
        action = draw(st.sampled_from(optional))
        argv.append(draw(st.sampled_from(action.option_strings)))
        if kind == "option" and action.nargs != 0:
            argv.append(draw(_values_for(action)))
    # "source hf" would probe the network; it is covered by the data layer's own tests
    argv = ["python-stdlib" if a == "hf" else a for a in argv]
    return argv + GUARDS.get(path, [])


class WouldServe(Exception):
    """Raised instead of serving forever, once the server has bound its socket."""


def run_cli(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help and usage errors
        code = 0 if exc.code is None else exc.code
    except WouldServe:  # valid serve arguments: the socket was bound, then closed
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_exit(argv, code, err) -> None:
    assert "Traceback" not in err, (argv, err)
    assert code in (0, 2), (argv, code, err)
    if code == 2:  # progress bars and notes may come first; the error is one line, the last
        lines = [line for line in err.replace("\r", "\n").split("\n") if line.strip()]
        errors = [line for line in lines if "error:" in line]
        assert len(errors) == 1 and lines[-1] == errors[0], (argv, err)
        assert errors[0].startswith("leviathan-explore"), (argv, err)


@pytest.fixture
def cli_sandbox(tmp_path, monkeypatch):
    """A working directory with an empty folder and a file that the fuzzed paths name."""
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "afile.txt").write_text("def f():\n    return 1\n" * 50)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    if any(p[0] == "serve" for p in LEAVES):
        import leviathan_explore.dashboard.app as app

        real_serve = app.pn.serve

        def bind_then_stop(*args, **kwargs):
            server = real_serve(*args, **{**kwargs, "start": False, "show": False})  # binds: errors surface here
            server.stop()
            raise WouldServe()

        monkeypatch.setattr(app.pn, "serve", bind_then_stop)
    return tmp_path


# Subcommands whose valid command lines do real (if tiny) work get fewer examples.
COSTLY = [p for p in sorted(LEAVES) if p in {("data", "build"), ("train",), ("compare",), ("serve",), ("bench",)}]
CHEAP = [p for p in sorted(LEAVES) if p not in COSTLY]


def _check_random_command_line(path, data, capsys) -> None:
    argv = data.draw(argv_for(path), label="argv")
    code, _, err = run_cli(argv, capsys)
    assert_clean_exit(argv, code, err)


@pytest.mark.parametrize("path", CHEAP, ids=[" ".join(p) for p in CHEAP])
@fast(50)
@given(data=st.data())
def test_random_command_lines_exit_0_or_2_with_one_line(cli_sandbox, capsys, path, data):
    _check_random_command_line(path, data, capsys)


@pytest.mark.parametrize("path", COSTLY, ids=[" ".join(p) for p in COSTLY])
@fast(20)
@given(data=st.data())
def test_random_command_lines_of_working_commands_exit_0_or_2(cli_sandbox, capsys, path, data):
    _check_random_command_line(path, data, capsys)


@fast(40)
@given(st.lists(st.one_of(TEXT, st.sampled_from(list({p[0] for p in LEAVES}) + ["-h", "--help", "--version"])),
                max_size=4))
def test_random_top_level_command_lines(cli_sandbox, capsys, argv):
    assume(not (argv and argv[0] in {p[0] for p in LEAVES} and len(argv) > 1))  # leaves are fuzzed above
    code, _, err = run_cli(argv, capsys)
    assert_clean_exit(argv, code, err)


@pytest.mark.parametrize("path", sorted(LEAVES), ids=[" ".join(p) for p in sorted(LEAVES)])
def test_help_of_every_subcommand_exits_0(path, capsys):
    code, out, err = run_cli([*path, "--help"], capsys)
    assert code == 0 and "usage:" in out and err == ""


SUBPROCESS_CASES = [
    ["params", "--d-model", "\u0663"],
    ["train", "--arch", "leviathan", "--out", "r", "--steps", "2", "--data", "afile.txt"],
    ["data", "build", "--out", "/proc/nope/x", "--max-tokens", "100"],
    ["nonsense", "a\nb"],
    ["params", "--preset", "bad\nname"],
]


@pytest.mark.parametrize("argv", SUBPROCESS_CASES, ids=[" ".join(a).replace("\n", "\\n") for a in SUBPROCESS_CASES])
def test_command_lines_in_a_real_process_print_no_traceback(argv, cli_sandbox):
    proc = subprocess.run([sys.executable, "-m", "leviathan_explore.cli", *argv], capture_output=True, text=True,
                          cwd=cli_sandbox, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert_clean_exit(argv, proc.returncode, proc.stderr)
