"""One entry point for the tokenizers this project uses, all working with no network.

``o200k_base`` (the paper's) and ``cl100k_base`` come from the ``bpe-openai`` wheel,
which ships their vocabularies. ``gpt2`` is not in that wheel and ``tiktoken`` would
download it, so its ranks are vendored in ``assets/tokenizers/gpt2.tiktoken.gz`` and
encoded with ``tiktoken`` (see the README there for provenance).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
from functools import lru_cache
from importlib import resources
from typing import Callable, Sequence

from ..config import TOKENIZER_VOCAB, ConfigError

TOKENIZER_NAMES = ("o200k_base", "cl100k_base", "gpt2")
DEFAULT_TOKENIZER = "o200k_base"
EOT_TEXT = "<|endoftext|>"

# bpe-openai refuses one call over 200,000 tokens or 1,000,000 characters; a piece of
# 32,768 characters is at most 4 * 32,768 = 131,072 tokens (one per UTF-8 byte).
MAX_ENCODE_CHARS = 32_768

_GPT2_ASSET = "assets/tokenizers/gpt2.tiktoken.gz"
_GPT2_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# GPT-2's pre-tokenisation pattern (tiktoken's r50k_pat_str).
_GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def split_for_encoding(text: str, limit: int = MAX_ENCODE_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, after a newline where possible.

    Tokens that would have spanned a cut are split there, so a long document encodes
    to almost (not always exactly) the ids of one call; decoding still gives the text back.
    """
    pieces: list[str] = []
    start, n = 0, len(text)
    while n - start > limit:
        cut = text.rfind("\n", start, start + limit)
        cut = start + limit if cut <= start else cut + 1
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


class Tokenizer:
    """A byte-level BPE tokenizer: ``encode`` text to ids and ``decode`` ids to text.

    ``encode`` treats special-token strings such as ``<|endoftext|>`` as ordinary text
    (so a corpus that quotes them cannot inject separators); the end-of-text id is
    ``eot_id`` and is added by the corpus builder between documents.
    """

    def __init__(self, name: str, n_vocab: int, eot_id: int,
                 encode_piece: Callable[[str], list[int]],
                 decode_ids: Callable[[Sequence[int]], str]):
        self.name = name
        self.n_vocab = n_vocab
        self.eot_id = eot_id
        self._encode_piece = encode_piece
        self._decode_ids = decode_ids

    def encode(self, text: str) -> list[int]:
        if len(text) <= MAX_ENCODE_CHARS:
            return self._encode_piece(text)
        ids: list[int] = []
        for piece in split_for_encoding(text):
            ids.extend(self._encode_piece(piece))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids``; bytes that are not valid UTF-8 become U+FFFD."""
        ids = [int(i) for i in ids]
        bad = next((i for i in ids if not 0 <= i < self.n_vocab), None)
        if bad is not None:
            raise ValueError(f"token id {bad} is out of range for {self.name}: ids must be in [0, {self.n_vocab})")
        return self._decode_ids(ids)

    def __repr__(self) -> str:
        return f"Tokenizer({self.name!r}, n_vocab={self.n_vocab}, eot_id={self.eot_id})"


def _bpe_openai_tokenizer(name: str) -> Tokenizer:
    import bpe_openai

    enc = bpe_openai.get_encoding(name)
    return Tokenizer(name, enc.n_vocab, enc.eot_token, enc.encode_ordinary,
                     lambda ids: enc.decode(ids, errors="replace"))


def _gpt2_tokenizer() -> Tokenizer:
    import tiktoken

    raw = gzip.decompress((resources.files("leviathan_explore") / _GPT2_ASSET).read_bytes())
    if hashlib.sha256(raw).hexdigest() != _GPT2_SHA256:
        raise ValueError(f"the vendored GPT-2 vocabulary {_GPT2_ASSET} is corrupt (sha256 mismatch); reinstall the package")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in raw.splitlines() if line)}
    eot = len(ranks)  # 50,256: the one special token follows the 50,256 merges
    enc = tiktoken.Encoding("gpt2", pat_str=_GPT2_PATTERN, mergeable_ranks=ranks,
                            special_tokens={EOT_TEXT: eot}, explicit_n_vocab=eot + 1)
    return Tokenizer("gpt2", enc.n_vocab, eot, enc.encode_ordinary,
                     lambda ids: enc.decode(ids, errors="replace"))


@lru_cache(maxsize=None)
def _load(name: str) -> Tokenizer:
    tok = _gpt2_tokenizer() if name == "gpt2" else _bpe_openai_tokenizer(name)
    if tok.n_vocab != TOKENIZER_VOCAB[name]:  # the parameter accounting in config.py relies on it
        raise ValueError(f"tokenizer {name} has {tok.n_vocab} ids, expected {TOKENIZER_VOCAB[name]}")
    return tok


def get_tokenizer(name: str = DEFAULT_TOKENIZER) -> Tokenizer:
    """The tokenizer called ``name`` (one of ``TOKENIZER_NAMES``), loaded once and cached."""
    if isinstance(name, Tokenizer):
        return name
    if name not in TOKENIZER_NAMES:
        raise ConfigError("tokenizer", name, f"must be one of {list(TOKENIZER_NAMES)}")
    return _load(name)
