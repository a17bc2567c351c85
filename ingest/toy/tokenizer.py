"""The toy model's word-level tokenizer.

Built with `tokenizers` (WordLevel model), saved as `tokenizer.json` in a folder and loaded back
with `transformers.AutoTokenizer.from_pretrained(folder)`: HookedTransformer re-loads a tokenizer
by its `name_or_path`, so it must be a folder on disk, never an in-memory object.

Pre-tokenisation lower-cases the text, cuts every run of digits into pairs ("1732" -> "17",
"32", as GPT-2 splits years) and then splits on whitespace and punctuation. Year halves
"00".."99" are single tokens; a century such as "17" is the same token as the year half "17".
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordLevel
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from circuitcat.catalog.errors import ModelLoadError
from circuitcat.ingest.toy.words import BOS, EOS, PAD, UNK, vocabulary

TOKENIZER_FILE = "tokenizer.json"


def build_tokenizer() -> Tokenizer:
    """The raw `tokenizers` object over the fixed toy vocabulary."""
    vocab = {word: i for i, word in enumerate(vocabulary())}
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\d\d"), behavior="isolated"),
            pre_tokenizers.Whitespace(),
        ]
    )
    return tok


def save_tokenizer(folder: Path) -> Path:
    """Write `tokenizer.json` and a `tokenizer_config.json` naming the special tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(folder / TOKENIZER_FILE))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "unk_token": UNK,
        "model_max_length": 1024,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_tokenizer(folder: Path) -> PreTrainedTokenizerFast:
    """Load the saved tokenizer as a `PreTrainedTokenizerFast` HookedTransformer accepts."""
    if not (folder / TOKENIZER_FILE).is_file():
        raise ModelLoadError(
            f"toy tokenizer file {folder / TOKENIZER_FILE} is missing; "
            "re-create it with `circuitcat toy train`"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"{folder / TOKENIZER_FILE} loaded as {type(tokenizer).__name__}, "
            "expected PreTrainedTokenizerFast"
        )
    return tokenizer
