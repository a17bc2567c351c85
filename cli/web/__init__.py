"""circuitcat.cli.web: `circuitcat serve`, the read-only HTTP API and web catalog."""

from .app import create_app
from .config import ServeConfig, load_tokens

__all__ = ["ServeConfig", "create_app", "load_tokens"]
