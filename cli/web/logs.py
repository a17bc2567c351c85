"""The server's logging: uvicorn's own set-up, with every query-string value left out of the
access log. A value may be a secret (`?token=...` sent by mistake, refused with 401 all the
same), and a log file outlives the request, so the log keeps the parameter names and writes
`***` for every value, on every route."""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

import uvicorn.config

ACCESS_LOGGER = "uvicorn.access"
_NAME = re.compile(r"[A-Za-z_][\w.\-\[\]]{0,40}")


def without_query_values(target: str) -> str:
    """`/api/x?token=abc&q=1` -> `/api/x?token=***&q=***`; a part that is not `name=value`
    with a plain name (`?abc123`, itself perhaps a secret) becomes `***` whole."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}=***" if eq and _NAME.fullmatch(name) else "***")
    return f"{path}?{'&'.join(parts)}"


class HideQueryValues(logging.Filter):
    """Rewrites uvicorn's access record (client, method, target, http version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], without_query_values(args[2]), *args[3:])
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging config with HideQueryValues on the access log."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config.setdefault("filters", {})["hide_query_values"] = {"()": HideQueryValues}
    config["loggers"][ACCESS_LOGGER]["filters"] = ["hide_query_values"]
    return config
