"""What `circuitcat serve` is configured with, resolved once: the store, the limits on ad hoc
Cypher, and who may write labels.

Write tokens come from CIRCUITCAT_SERVE_TOKENS (`user:token` pairs separated by commas or
whitespace) and/or a file of `user:token` lines (`--tokens-file`, CIRCUITCAT_SERVE_TOKENS_FILE;
`#` starts a comment). A client sends one as `Authorization: Bearer <token>`; tokens never go in
URLs, and nothing circuitcat logs contains them. No tokens: the server is read-only.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from circuitcat.catalog.errors import CircuitcatError
from circuitcat.catalog.labels import AUTHOR

MIN_TOKEN_CHARS = 16
TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class ServeConfigError(CircuitcatError):
    """The server's settings are unusable (a malformed or weak token, a missing file)."""


class ServeConfig(BaseModel):
    """Settings of one server process."""

    model_config = ConfigDict(frozen=True)
    store: str | None = None  # None: CIRCUITCAT_STORE or the per-user default
    cypher_timeout_s: float = Field(default=10.0, gt=0, le=600)
    cypher_row_limit: int = Field(default=1000, ge=1, le=100_000)
    # user -> token; empty means nobody may write
    tokens: dict[str, str] = Field(default_factory=dict, repr=False)

    @property
    def writable(self) -> bool:
        return bool(self.tokens)

    def user_of(self, token: str) -> str | None:
        """The user a token belongs to, compared in constant time; None for no match."""
        found = None
        for user, known in self.tokens.items():
            if hmac.compare_digest(token.encode(), known.encode()):
                found = user
        return found


def parse_tokens(text: str, where: str) -> dict[str, str]:
    """`user:token` entries separated by newlines, commas or spaces; `#` starts a comment."""
    tokens: dict[str, str] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        for entry in line.split("#", 1)[0].replace(",", " ").split():
            user, sep, token = entry.partition(":")
            if not sep or not AUTHOR.fullmatch(user):
                raise ServeConfigError(
                    f"{where}, line {line_no}: an entry is not user:token (user: 1-64 letters, "
                    "digits or . @ + - _)"
                )
            if len(token) < MIN_TOKEN_CHARS:
                raise ServeConfigError(
                    f"{where}, line {line_no}: the token of {user!r} is shorter than "
                    f"{MIN_TOKEN_CHARS} characters; make one with {TOKEN_HINT}"
                )
            tokens[user] = token
    return tokens


def load_tokens(tokens_file: Path | None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tokens from CIRCUITCAT_SERVE_TOKENS and the tokens file (argument, else
    CIRCUITCAT_SERVE_TOKENS_FILE); the file wins for a user named in both."""
    env = os.environ if env is None else env
    tokens = parse_tokens(env.get("CIRCUITCAT_SERVE_TOKENS", ""), "CIRCUITCAT_SERVE_TOKENS")
    path = tokens_file or (
        Path(env["CIRCUITCAT_SERVE_TOKENS_FILE"])
        if env.get("CIRCUITCAT_SERVE_TOKENS_FILE")
        else None
    )
    if path is not None:
        try:
            text = path.read_text("utf-8")
        except OSError as e:
            raise ServeConfigError(f"cannot read the tokens file {path}: {e.strerror}") from e
        tokens.update(parse_tokens(text, str(path)))
    return tokens
