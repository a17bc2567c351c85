"""Corpora for the feature pass: read documents, tokenise them, cut the stream into windows.

Sources (`open_corpus`):
    a text file         one document per non-empty line
    a .jsonl file       one JSON object per non-empty line, its `text` field is the document
    a folder            every *.txt file below it (sorted by relative path) is one document
    "toy"               `n_docs` texts of the toy model's synthetic corpus, from `seed`

Documents are read lazily, so `max_tokens` stops reading early. Tokenised documents (BOS first
when the tokenizer has one) are concatenated into one stream held as int32 ids (4 B a token;
activations are never held) and cut into windows of `n_ctx` tokens. The last window may be
shorter; it runs as a batch of its own, so no token is dropped or padded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from circuitcat.catalog.errors import IngestError

CorpusKind = Literal["text", "jsonl", "folder", "toy"]
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TOY_SOURCE = "toy"
# Documents handed to the tokenizer per call: large enough for the fast tokenizer's batching.
TOKENIZE_CHUNK = 512


@dataclass(frozen=True)
class Corpus:
    """Where documents come from; `documents()` reads them (again) on each call."""

    source: str
    kind: CorpusKind
    path: Path | None = None
    n_docs: int = 2000
    seed: int = 0
    n_ctx: int = 32

    def documents(self) -> Iterator[str]:
        if self.kind == "toy":
            from circuitcat.ingest.toy.corpus import generate_texts

            yield from generate_texts(self.seed, self.n_docs, self.n_ctx)
        elif self.kind == "folder":
            yield from _folder_docs(self._path)
        elif self.kind == "jsonl":
            yield from _jsonl_docs(self._path)
        else:
            yield from _text_docs(self._path)

    @property
    def _path(self) -> Path:
        if self.path is None:
            raise IngestError(f"corpus {self.source!r} has no path")
        return self.path

    def describe(self) -> dict[str, Any]:
        """What the Run node records about the corpus."""
        if self.kind == "toy":
            return {"source": TOY_SOURCE, "n_docs": self.n_docs, "seed": self.seed}
        return {"source": str(self._path.resolve()), "kind": self.kind}


def open_corpus(source: str, *, n_docs: int = 2000, seed: int = 0, n_ctx: int = 32) -> Corpus:
    """Check that `source` names a readable corpus (see module doc); nothing is read yet."""
    if source == TOY_SOURCE:
        if n_docs < 1:
            raise IngestError(f"--n-docs must be at least 1 for the toy corpus (got {n_docs})")
        return Corpus(source, "toy", None, n_docs, seed, n_ctx)
    path = Path(source).expanduser()
    if path.is_dir():
        return Corpus(source, "folder", path)
    if path.is_file():
        kind: CorpusKind = "jsonl" if path.suffix.lower() in JSONL_SUFFIXES else "text"
        return Corpus(source, kind, path)
    raise IngestError(
        f"no corpus at {path}: pass a text file (one document per line), a .jsonl file with a "
        "'text' field, a folder of .txt files, or 'toy'"
    )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise IngestError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.reason}); convert it, e.g. "
            f"iconv -t UTF-8 {path.name}"
        ) from e


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8") as f:
            for number, line in enumerate(f, start=1):
                if line.strip():
                    yield number, line.rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise IngestError(
            f"{path} is not UTF-8 text ({e.reason}); convert it, e.g. iconv -t UTF-8 {path.name}"
        ) from e


def _text_docs(path: Path) -> Iterator[str]:
    for _, line in _lines(path):
        yield line


def _jsonl_docs(path: Path) -> Iterator[str]:
    for number, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise IngestError(
                f"{path} line {number}: not valid JSON ({e.msg}); each line must be an object "
                'such as {"text": "..."}'
            ) from e
        text = row.get("text") if isinstance(row, dict) else None
        if not isinstance(text, str):
            raise IngestError(
                f"{path} line {number}: no string 'text' field; each line must be an object "
                'such as {"text": "..."}'
            )
        if text.strip():
            yield text


def _folder_docs(path: Path) -> Iterator[str]:
    files = sorted(path.rglob("*.txt"), key=lambda p: p.relative_to(path).as_posix())
    if not files:
        raise IngestError(f"folder {path} has no .txt files; put one document per .txt file")
    for file in files:
        text = _read(file)
        if text.strip():
            yield text


# ---- tokens ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenStream:
    """The tokenised corpus as one stream, cut into `n_ctx` windows (the last may be shorter)."""

    ids: Int[Tensor, " n_tokens"]
    n_ctx: int
    n_docs: int

    @property
    def n_tokens(self) -> int:
        return int(self.ids.numel())

    @property
    def n_windows(self) -> int:
        return -(-self.n_tokens // self.n_ctx)

    def n_batches(self, batch_size: int) -> int:
        full, rest = divmod(self.n_tokens, self.n_ctx)
        return -(-full // batch_size) + (1 if rest else 0)

    def batches(
        self, batch_size: int, start: int = 0
    ) -> Iterator[tuple[int, Int[Tensor, "batch pos"]]]:
        """(index of the batch's first window, its tokens) for batches `start`, `start+1`, ..."""
        full = self.n_tokens // self.n_ctx
        windows = self.ids[: full * self.n_ctx].view(full, self.n_ctx)
        n_full_batches = -(-full // batch_size)
        for b in range(start, self.n_batches(batch_size)):
            if b < n_full_batches:
                first = b * batch_size
                yield first, windows[first : first + batch_size].long()
            else:  # the short tail window, on its own
                yield full, self.ids[full * self.n_ctx :].view(1, -1).long()

    def fingerprint(self) -> str:
        """sha256 of the ids and the window length: equal streams give equal batches."""
        digest = hashlib.sha256(f"n_ctx={self.n_ctx};".encode())
        digest.update(self.ids.numpy().tobytes())
        return digest.hexdigest()


def _tokenize_chunk(tokenizer: Any, docs: list[str]) -> list[list[int]]:
    ids: list[list[int]] = tokenizer(docs, add_special_tokens=False, verbose=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    return [[bos, *doc] if bos is not None else doc for doc in ids]


def tokenize(
    corpus: Corpus, tokenizer: Any, *, n_ctx: int, max_tokens: int | None = None
) -> TokenStream:
    """Tokenise documents until the corpus ends or `max_tokens` are reached.

    Raises IngestError when the corpus holds no document, or no token the model knows."""
    if tokenizer is None:
        raise IngestError("the model has no tokenizer; load it from a folder with tokenizer files")
    parts: list[Tensor] = []
    n_tokens = n_docs = 0
    for chunk in _chunks(corpus.documents(), TOKENIZE_CHUNK):
        docs = _tokenize_chunk(tokenizer, chunk)
        parts.append(torch.tensor([t for doc in docs for t in doc], dtype=torch.int32))
        n_tokens, n_docs = n_tokens + parts[-1].numel(), n_docs + len(docs)
        if max_tokens is not None and n_tokens >= max_tokens:
            break
    if not n_docs:
        raise IngestError(f"corpus {corpus.source!r} has no documents (no non-empty text)")
    ids = torch.cat(parts)[:max_tokens]
    _check_decodable(ids, tokenizer, corpus.source)
    return TokenStream(ids, n_ctx, n_docs)


def _chunks(docs: Iterator[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_decodable(ids: Tensor, tokenizer: Any, source: str) -> None:
    special = {getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "unk_token_id", None)}
    special.discard(None)
    known = ~torch.isin(ids, torch.tensor(sorted(special), dtype=ids.dtype))
    if not bool(known.any()):
        raise IngestError(
            f"corpus {source!r} has no token the model's tokenizer knows (every token is BOS or "
            "unknown): is it text in the model's language, and the right model?"
        )
