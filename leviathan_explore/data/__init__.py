"""Tokenizers, corpora and memory-mapped token shards.

    tok = get_tokenizer("o200k_base")                  # offline; o200k_base, cl100k_base, gpt2
    ensure_corpus()                                    # data/shards/python-stdlib-compact, built once
    build_corpus("python-stdlib", "data/shards/python-stdlib", compact=4096)
    data = load_token_data("data/shards/python-stdlib")
    data.train, data.val                               # np.memmap uint32, model-space ids
"""

from .compaction import UNK_TEXT, VocabMap, compact_vocabulary
from .corpora import DEFAULT_HF_DATASET, OFFLINE_SOURCES, SOURCES, CorpusUnavailable, iter_documents
from .catalog import CORPORA, DEFAULT_CORPUS, CorpusSpec, ensure_corpus
from .shards import (DEFAULT_MAX_TOKENS, TokenData, build_corpus, describe_manifest,
                     load_token_data, read_manifest)
from .tokenizers import DEFAULT_TOKENIZER, TOKENIZER_NAMES, Tokenizer, get_tokenizer

__all__ = [
    "get_tokenizer", "Tokenizer", "TOKENIZER_NAMES", "DEFAULT_TOKENIZER",
    "build_corpus", "load_token_data", "read_manifest", "describe_manifest", "TokenData",
    "DEFAULT_MAX_TOKENS", "CORPORA", "DEFAULT_CORPUS", "CorpusSpec", "ensure_corpus",
    "iter_documents", "SOURCES", "OFFLINE_SOURCES", "DEFAULT_HF_DATASET", "CorpusUnavailable",
    "compact_vocabulary", "VocabMap", "UNK_TEXT",
]
