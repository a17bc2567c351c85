"""The toy's standard evaluation: greater-than on held-out start years, transcoders measured on a
held-out corpus sample (its own seed, never used in training)."""

from __future__ import annotations

from transformer_lens import HookedTransformer

from circuitcat.ingest.evaluate import EvalReport, evaluate, require_tokenizer
from circuitcat.ingest.tasks import greater_than
from circuitcat.ingest.toy.corpus import encode_texts, generate_texts
from circuitcat.ingest.toy.model import load_toy_model, load_toy_transcoders
from circuitcat.ingest.transcoders.transcoder import TranscoderSet

EVAL_CORPUS_SEED = 1_000_003
EVAL_CORPUS_SEQUENCES = 500
EVAL_PROMPT_SEED = 0


def evaluate_toy(
    model: HookedTransformer | None = None,
    tset: TranscoderSet | None = None,
    n: int = 200,
    seed: int = EVAL_PROMPT_SEED,
) -> EvalReport:
    """Evaluate the toy (the committed one unless given) on `n` held-out greater-than prompts."""
    model = model if model is not None else load_toy_model()
    tset = tset if tset is not None else load_toy_transcoders()
    tokenizer = require_tokenizer(model)
    task = greater_than(tokenizer, n=n, seed=seed, split="eval")
    n_ctx = model.cfg.n_ctx
    texts = generate_texts(EVAL_CORPUS_SEED, EVAL_CORPUS_SEQUENCES, n_ctx)
    corpus = encode_texts(texts, tokenizer, n_ctx)
    return evaluate(model, tset, task, corpus, pad_id=int(tokenizer.pad_token_id))
