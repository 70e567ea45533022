"""The data layer: offline tokenizers, corpora, shards, compaction, and their errors."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from leviathan_explore.cli import main
from leviathan_explore.config import TOKENIZER_VOCAB, ConfigError
from leviathan_explore.data import (OFFLINE_SOURCES, SOURCES, CorpusUnavailable, build_corpus,
                                    get_tokenizer, iter_documents, load_token_data, read_manifest)
from leviathan_explore.data import corpora, shards, tokenizers
from leviathan_explore.data.compaction import UNK_TEXT, VocabMap, compact_vocabulary
from leviathan_explore.data.shards import document_in_val
from leviathan_explore.data.tokenizers import MAX_ENCODE_CHARS, split_for_encoding

SAMPLE = ("def area(r: float) -> float:\n    \"\"\"Circle area.\"\"\"\n    return 3.14159 * r ** 2\n\n"
          "Prose with unicode: naïve café, 東京, emoji 🚀, and a quoted <|endoftext|> marker.\n")

DOCS = [f"Document {i}: " + " ".join(f"word{(i * 7 + j) % 23}" for j in range(40 + 5 * i)) + "\n" for i in range(12)]


def write_txt(folder: Path, docs: list[str]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"doc{i:02d}.txt").write_text(doc, encoding="utf-8")
    return str(folder / "*.txt")


def split_documents(ids: np.ndarray, eot: int) -> list[list[int]]:
    """The documents of a shard: runs of ids each closed by ``eot``."""
    ids = [int(i) for i in ids]
    assert not ids or ids[-1] == eot, "a shard ends with the end-of-text id"
    docs, current = [], []
    for i in ids:
        if i == eot:
            docs.append(current)
            current = []
        else:
            current.append(i)
    return docs


# ---- tokenizers ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, eot", [("o200k_base", 199_999), ("cl100k_base", 100_257), ("gpt2", 50_256)])
def test_tokenizers_round_trip_offline(name, eot, monkeypatch):
    def no_network(*_a, **_k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    tokenizers._load.cache_clear()  # really load the vocabulary here, with no network
    tok = get_tokenizer(name)
    assert tok.name == name and tok.eot_id == eot and tok.n_vocab == TOKENIZER_VOCAB[name]
    ids = tok.encode(SAMPLE)
    assert tok.decode(ids) == SAMPLE
    assert eot not in ids, "special-token text is encoded as ordinary text"
    assert all(0 <= i < tok.n_vocab for i in ids) and len(ids) < len(SAMPLE)
    assert tok.decode([eot]) == "<|endoftext|>"


def test_gpt2_ids_match_the_published_vocabulary():
    tok = get_tokenizer("gpt2")
    # Reference ids of the original GPT-2 encoder.json.
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.encode(" the") == [262]


def test_long_texts_are_encoded_in_pieces_and_decode_back():
    tok = get_tokenizer("o200k_base")
    text = ("x = [" + ", ".join(str(i) for i in range(400)) + "]\n") * 40 + "y" * (MAX_ENCODE_CHARS + 5)
    pieces = split_for_encoding(text)
    assert "".join(pieces) == text and len(pieces) > 2
    assert all(len(p) <= MAX_ENCODE_CHARS for p in pieces)
    assert all(p.endswith("\n") for p in pieces[:-2]), "cuts fall after a newline where there is one"
    assert tok.decode(tok.encode(text)) == text


def test_unknown_tokenizer_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="o200k_base.*cl100k_base.*gpt2"):
        get_tokenizer("llama3")
    with pytest.raises(ValueError, match="out of range"):
        get_tokenizer("gpt2").decode([50_257])


# ---- sources ------------------------------------------------------------------------------------

def test_stdlib_source_mixes_code_and_prose_in_a_seeded_order():
    paths = corpora.stdlib_paths()
    assert len(paths) > 100 and all(p.suffix == ".py" for p in paths)
    assert not any("site-packages" in p.parts for p in paths)
    topics = corpora.pydoc_topics()
    first = [next(iter_documents("python-stdlib", seed=0)) for _ in range(2)]
    assert first[0] == first[1], "same seed, same order"
    docs = iter_documents("python-stdlib", seed=0)
    head = [next(docs) for _ in range(200)]
    other = iter_documents("python-stdlib", seed=1)
    assert [next(other) for _ in range(5)] != head[:5]
    assert any(d in topics for d in head) and any("def " in d or "import " in d for d in head)


def test_site_packages_source_reads_text_files_and_skips_metadata(tmp_path, monkeypatch):
    root = tmp_path / "site-packages"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg-1.0.dist-info").mkdir()
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "mod.py").write_text("print('hi')\n")
    (root / "pkg" / "README.md").write_text("# Title\n")
    (root / "pkg" / "notes.rst").write_text("Notes\n=====\n")
    (root / "pkg" / "data.json").write_text("{}")
    (root / "pkg" / "latin1.txt").write_bytes(b"caf\xe9\n")
    (root / "pkg-1.0.dist-info" / "top_level.txt").write_text("pkg\n")
    (root / "pkg" / "__pycache__" / "cached.py").write_text("x = 1\n")
    monkeypatch.setattr(corpora, "site_packages_dirs", lambda: [root])
    assert sorted(p.name for p in corpora.site_packages_paths()) == ["README.md", "latin1.txt", "mod.py", "notes.rst"]
    skipped = Counter()
    docs = list(iter_documents("site-packages", skipped=skipped))
    assert sorted(docs) == sorted(["print('hi')\n", "# Title\n", "Notes\n=====\n"])
    assert skipped == {"non_utf8": 1}


def test_files_source_reads_txt_jsonl_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("plain text document\n")
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "json one"}\n\n{"text": "json two"}\n{"title": "no text"}\n'
                                       b'not json\n{"text": "bad \xff bytes"}\n')
    pq.write_table(pa.table({"text": ["parquet one", None, "parquet two"]}), tmp_path / "c.parquet")
    skipped = Counter()
    docs = list(iter_documents("files", glob=str(tmp_path / "*"), skipped=skipped))
    assert sorted(docs) == sorted(["plain text document\n", "json one", "json two", "parquet one", "parquet two"])
    assert skipped == {"no_text": 2, "bad_json": 1, "non_utf8": 1}


def test_hf_source_streams_a_local_dataset_through_the_shuffle_buffer(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    with open(folder / "train.jsonl", "w") as fh:
        for i in range(30):
            fh.write(json.dumps({"text": f"hub document {i}"}) + "\n")
    docs = list(iter_documents("hf", dataset=str(folder), seed=0))
    assert sorted(docs) == sorted(f"hub document {i}" for i in range(30))
    assert docs != [f"hub document {i}" for i in range(30)], "the shuffle buffer reorders the stream"


def test_hf_source_without_network_fails_fast_naming_the_offline_sources(monkeypatch):
    with socket.socket() as s:  # a local port with nothing listening: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    start = time.perf_counter()
    with pytest.raises(CorpusUnavailable) as info:
        iter_documents("hf", dataset="monology/pile-uncopyrighted")
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert "\n" not in message and "pile-uncopyrighted" in message
    assert all(name in message for name in OFFLINE_SOURCES)


def test_unknown_source_and_bad_globs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="source='pile'.*python-stdlib"):
        iter_documents("pile")
    with pytest.raises(ConfigError, match="glob=None"):
        iter_documents("files")
    with pytest.raises(ConfigError, match="matches no files"):
        iter_documents("files", glob=str(tmp_path / "*.txt"))
    (tmp_path / "table.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match=r"table\.csv.*\.txt"):
        iter_documents("files", glob=str(tmp_path / "*"))
    assert set(SOURCES) == {"python-stdlib", "files", "hf", "site-packages", "python-docs"}


# ---- building and loading shards ------------------------------------------------------------------

def test_shards_round_trip_and_the_split_is_by_document(tmp_path):
    pattern = write_txt(tmp_path / "docs", DOCS)
    manifest = build_corpus("files", tmp_path / "data", glob=pattern, tokenizer="gpt2", val_fraction=0.25,
                            seed=3, progress=False)
    data = load_token_data(tmp_path / "data", expect_tokenizer="gpt2", verify=True)
    tok = get_tokenizer("gpt2")
    assert data.vocab_size == tok.n_vocab and data.eot_id == tok.eot_id and data.unk_id is None
    assert len(data.train) == manifest["train_tokens"] and len(data.val) == manifest["val_tokens"]
    assert isinstance(data.train, np.memmap) and data.train.dtype == np.uint32
    train_docs = [data.decode(d) for d in split_documents(data.train, data.eot_id)]
    val_docs = [data.decode(d) for d in split_documents(data.val, data.eot_id)]
    assert sorted(train_docs + val_docs) == sorted(DOCS), "every document whole, in exactly one split"
    assert train_docs and val_docs and not set(train_docs) & set(val_docs)
    assert manifest["n_documents"] == {"train": len(train_docs), "val": len(val_docs)}
    assert data.token_counts().sum() == len(data.train)
    assert data.token_counts()[data.eot_id] == len(train_docs)
    assert data.encode(DOCS[0]) == tok.encode(DOCS[0])
    for key in ("source", "tokenizer", "tokenizer_vocab_size", "vocab_size", "eot_id", "compact", "train_tokens",
                "val_tokens", "n_documents", "skipped_documents", "content_hash", "python_version", "created_by"):
        assert key in read_manifest(tmp_path / "data"), key


def test_document_split_hash_follows_the_fraction_and_the_seed():
    flags = [document_in_val(i, 0, 0.1) for i in range(20_000)]
    assert 0.08 < sum(flags) / len(flags) < 0.12
    assert flags != [document_in_val(i, 1, 0.1) for i in range(20_000)]
    assert flags == [document_in_val(i, 0, 0.1) for i in range(20_000)]


def test_one_split_is_never_left_empty(tmp_path):
    pattern = write_txt(tmp_path / "docs", DOCS[:2])
    for seed in range(6):
        m = build_corpus("files", tmp_path / f"d{seed}", glob=pattern, tokenizer="gpt2", seed=seed, progress=False)
        assert m["n_documents"] == {"train": 1, "val": 1}
    pattern = write_txt(tmp_path / "one", ["x"])  # one token: nothing to split
    with pytest.raises(CorpusUnavailable, match="1 usable document"):
        build_corpus("files", tmp_path / "single", glob=pattern, tokenizer="gpt2", progress=False)
    assert not (tmp_path / "single").exists()


def test_a_single_text_file_is_split_by_position(tmp_path):
    """The usual input.txt: its first 1 - val_fraction of tokens train, the rest validate."""
    text = " ".join(DOCS) * 20
    pattern = write_txt(tmp_path / "one", [text])
    m = build_corpus("files", tmp_path / "d", glob=pattern, tokenizer="gpt2", val_fraction=0.1, progress=False)
    assert m["n_documents"] == {"train": 1, "val": 1}
    ids = get_tokenizer("gpt2").encode(text)
    data = load_token_data(tmp_path / "d")
    cut = round(0.9 * len(ids))
    assert list(data.train) == ids[:cut] + [data.eot_id] and list(data.val) == ids[cut:] + [data.eot_id]


def test_token_budget_is_exact_and_recorded(tmp_path):
    m = build_corpus("python-stdlib", tmp_path / "d", max_tokens=12_345, progress=False)
    assert m["train_tokens"] + m["val_tokens"] == 12_345 and m["budget_reached"]
    data = load_token_data(tmp_path / "d")
    assert data.train[-1] == data.eot_id and data.val[-1] == data.eot_id


def test_compaction_keeps_the_most_frequent_ids_and_maps_back(tmp_path):
    pattern = write_txt(tmp_path / "docs", DOCS)
    build_corpus("files", tmp_path / "full", glob=pattern, tokenizer="gpt2", seed=1, progress=False)
    m = build_corpus("files", tmp_path / "small", glob=pattern, tokenizer="gpt2", seed=1, compact=16, progress=False)
    full, small = load_token_data(tmp_path / "full"), load_token_data(tmp_path / "small")
    assert m["vocab_size"] == small.vocab_size == 17 and small.unk_id == 16 and m["compact"] == 16
    vmap = small.vocab_map
    assert vmap.model_to_tokenizer[small.eot_id] == get_tokenizer("gpt2").eot_id, "end-of-text is always kept"
    full_counts = full.token_counts()
    kept = set(int(i) for i in vmap.model_to_tokenizer)
    by_frequency = sorted(kept - {full.eot_id}, key=lambda i: full_counts[i])
    assert full_counts[by_frequency[0]] >= max(np.delete(full_counts, list(kept))), "the K most frequent ids"
    table = vmap.tokenizer_to_model_table()
    np.testing.assert_array_equal(np.asarray(small.train), table[np.asarray(full.train)])
    np.testing.assert_array_equal(np.asarray(small.val), table[np.asarray(full.val)])
    kept_counts = small.token_counts()[:16]
    assert np.all(np.diff(kept_counts) <= 0), "model ids are frequency ranks"
    assert small.token_counts()[16] == np.isin(np.asarray(full.train), list(kept), invert=True).sum()
    # decode maps back through the vocabulary map; dropped ids read as <|unk|>
    doc = split_documents(small.train, small.eot_id)[0]
    text = small.decode(doc)
    assert UNK_TEXT in text and text.replace(UNK_TEXT, "") != ""
    common = get_tokenizer("gpt2").decode([int(vmap.model_to_tokenizer[0])])
    assert small.decode(small.encode(common)) == common
    saved = json.loads((tmp_path / "small" / "vocab_map.json").read_text())
    assert saved["model_to_tokenizer"] == [int(i) for i in vmap.model_to_tokenizer] and saved["unk_id"] == 16


def test_compact_vocabulary_breaks_ties_by_id_and_validates_k():
    counts = np.array([5, 0, 9, 5, 1, 0], dtype=np.int64)
    vmap = compact_vocabulary(counts, 4, tokenizer="t", keep=[5])
    assert list(vmap.model_to_tokenizer) == [2, 0, 3, 5]
    assert list(vmap.tokenizer_to_model_table()) == [1, 4, 0, 2, 4, 3]
    with pytest.raises(ValueError, match="compact=6"):
        compact_vocabulary(counts, 6, tokenizer="t")


def test_a_rebuild_gives_byte_identical_files(tmp_path):
    kwargs = dict(max_tokens=30_000, compact=256, progress=False, created_by="test")
    build_corpus("python-stdlib", tmp_path / "a", **kwargs)
    first = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    build_corpus("python-stdlib", tmp_path / "a", **kwargs)  # replaces the earlier build in place
    build_corpus("python-stdlib", tmp_path / "b", **kwargs)
    for folder in ("a", "b"):
        assert {p.name: p.read_bytes() for p in (tmp_path / folder).iterdir()} == first
    assert sorted(first) == ["manifest.json", "train.bin", "val.bin", "vocab_map.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"], "no temporary folders left"


def test_non_utf8_documents_are_skipped_and_counted(tmp_path):
    pattern = write_txt(tmp_path / "docs", DOCS[:4])
    (tmp_path / "docs" / "latin1.txt").write_bytes("café au lait\n".encode("latin-1"))
    (tmp_path / "docs" / "empty.txt").write_bytes(b"")
    m = build_corpus("files", tmp_path / "data", glob=pattern, tokenizer="gpt2", progress=False)
    assert m["skipped_documents"] == 2 and m["skipped_reasons"] == {"empty": 1, "non_utf8": 1}
    assert sum(m["n_documents"].values()) == 4


def test_an_interrupted_build_leaves_the_previous_data_untouched(tmp_path, monkeypatch):
    pattern = write_txt(tmp_path / "docs", DOCS)
    build_corpus("files", tmp_path / "data", glob=pattern, tokenizer="gpt2", progress=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()}

    def interrupted(*_a, **_k):
        yield from DOCS[:5]
        raise KeyboardInterrupt

    monkeypatch.setattr(shards, "iter_documents", interrupted)
    for out in ("data", "fresh"):
        with pytest.raises(KeyboardInterrupt):
            build_corpus("files", tmp_path / out, glob=pattern, tokenizer="gpt2", seed=5, progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "data").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "docs"], "no half-written or temporary folder"


def test_temporary_folders_of_killed_builds_are_removed(tmp_path):
    stale = tmp_path / ".data.tmp-killed"
    stale.mkdir()
    (stale / "train.bin").write_bytes(b"\0" * 8)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (stale / "BUILDING").write_text(dead.stdout.strip())
    alive = tmp_path / ".data.tmp-running"
    alive.mkdir()
    (alive / "BUILDING").write_text(str(os.getpid()))
    pattern = write_txt(tmp_path / "docs", DOCS[:3])
    build_corpus("files", tmp_path / "data", glob=pattern, tokenizer="gpt2", progress=False)
    assert not stale.exists() and alive.exists()


# ---- load errors ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("small")
    pattern = write_txt(root / "docs", DOCS)
    build_corpus("files", root / "data", glob=pattern, tokenizer="o200k_base", compact=64, progress=False)
    return root / "data"


def copy_data(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    return dst


def test_missing_or_empty_data_dirs_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nope'} does not exist.*data build"):
        load_token_data(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.json is missing.*train.bin"):
        load_token_data(tmp_path / "empty")


def test_a_different_tokenizer_is_refused(small_data):
    with pytest.raises(ConfigError, match="tokenizer='cl100k_base'.*o200k_base.*200019"):
        load_token_data(small_data, expect_tokenizer="cl100k_base")
    assert load_token_data(small_data, expect_tokenizer=get_tokenizer("o200k_base")).vocab_size == 65


def test_truncated_or_corrupt_shards_are_detected(small_data, tmp_path):
    truncated = copy_data(small_data, tmp_path / "truncated")
    size = (truncated / "train.bin").stat().st_size
    with open(truncated / "train.bin", "r+b") as fh:
        fh.truncate(size - 4)
    with pytest.raises(ValueError, match=f"train.bin has {size - 4} bytes.*truncated"):
        load_token_data(truncated)
    corrupt = copy_data(small_data, tmp_path / "corrupt")
    raw = bytearray((corrupt / "val.bin").read_bytes())
    raw[0] ^= 1
    (corrupt / "val.bin").write_bytes(bytes(raw))
    load_token_data(corrupt)  # sizes match: the cheap check passes
    with pytest.raises(ValueError, match="sha256.*corrupt"):
        load_token_data(corrupt, verify=True)
    broken = copy_data(small_data, tmp_path / "broken")
    (broken / "vocab_map.json").unlink()
    with pytest.raises(FileNotFoundError, match="vocab_map.json is missing"):
        load_token_data(broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_token_data(broken)


def test_build_arguments_are_checked_before_anything_is_written(tmp_path):
    bad = [dict(source="pile"), dict(tokenizer="bert"), dict(max_tokens=0), dict(compact=0),
           dict(compact=200_019), dict(val_fraction=0.0), dict(val_fraction=0.6), dict(seed=-1)]
    for kwargs in bad:
        args = {"source": "python-stdlib", **kwargs}
        with pytest.raises(ConfigError):
            build_corpus(args.pop("source"), tmp_path / "out", progress=False, **args)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a token data directory"):
        build_corpus("python-stdlib", tmp_path / "notes", max_tokens=1000, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"


def test_vocab_map_is_validated(tmp_path):
    path = tmp_path / "vocab_map.json"
    path.write_text(json.dumps({"tokenizer": "gpt2", "tokenizer_vocab_size": 10, "model_to_tokenizer": [1, 1]}))
    with pytest.raises(ValueError, match="distinct"):
        VocabMap.load(path)


# ---- the shared fixture ---------------------------------------------------------------------------

def test_tiny_data_dir_fixture(tiny_data_dir):
    data = load_token_data(tiny_data_dir, verify=True)
    assert data.vocab_size == 2049 and data.unk_id == 2048 and data.manifest["source"] == "python-stdlib"
    assert 150_000 < len(data.train) < 205_000 and len(data.val) > 0
    assert data.token_counts()[data.eot_id] == data.manifest["n_documents"]["train"]
    assert data.train.max() < data.vocab_size


# ---- command line ---------------------------------------------------------------------------------

def test_cli_data_build_and_info(tmp_path, capsys):
    out = tmp_path / "shards"
    assert main(["data", "build", "--source", "python-stdlib", "--max-tokens", "20000", "--compact", "128",
                 "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"in [0-9.]+ s: [0-9,]+ tokens/s", printed)
    manifest = read_manifest(out)
    assert manifest["train_tokens"] + manifest["val_tokens"] == 20_000
    assert manifest["created_by"].startswith("leviathan-explore data build --source python-stdlib")
    assert main(["data", "info", str(out), "--verify"]) == 0
    assert "content hash verified" in capsys.readouterr().out


@pytest.mark.parametrize("argv, expected", [
    (["data", "build", "--source", "pile"], "source='pile'"),
    (["data", "build", "--source", "files", "--glob", "/nonexistent/*.txt"], "matches no files"),
    (["data", "build", "--tokenizer", "bert"], "tokenizer='bert'"),
    (["data", "info", "/nonexistent/data"], "does not exist"),
])
def test_cli_errors_are_one_line_with_exit_2(argv, expected, tmp_path, capsys):
    if argv[1] == "build":
        argv = argv + ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
