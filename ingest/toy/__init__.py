"""The shipped toy model `toy-years`: a small GPT-2-style model with a greater-than circuit,
its word-level tokenizer, synthetic corpus, and one transcoder per MLP layer."""

from circuitcat.ingest.toy.model import TOY_MODEL_NAME, load_toy_model, load_toy_transcoders

__all__ = ["TOY_MODEL_NAME", "load_toy_model", "load_toy_transcoders"]
