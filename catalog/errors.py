"""Typed errors. Every failure the library reports is a CircuitcatError; the CLI prints its
message as one line, so each message names the problem and the fix."""


class CircuitcatError(Exception):
    """Root of every error circuitcat raises on purpose."""


class StoreError(CircuitcatError):
    """The graph store failed or refused an operation."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or opened (server down, wrong URI, path not writable)."""


class StoreAuthError(StoreError):
    """The server refused the credentials."""


class InvalidRowsError(CircuitcatError):
    """A batch of nodes or edges is malformed (missing uid, NaN weight, ragged columns)."""


class MissingEndpointError(StoreError):
    """A bulk load refused edges whose endpoint node does not exist; nothing was written."""


class QueryError(CircuitcatError):
    """A named query is unknown, or a Cypher query failed or was refused."""


class ReadOnlyViolationError(QueryError):
    """A write query was sent without permission to write."""


class QueryTimeoutError(QueryError):
    """A query ran past the time it was given and was stopped by the engine."""


class ModelLoadError(CircuitcatError):
    """A model could not be loaded (unknown name offline, bad local folder)."""


class TranscoderLoadError(CircuitcatError):
    """Transcoder files are missing, malformed, or do not match the model."""


class TaskError(CircuitcatError):
    """A task or prompt file is malformed or does not fit the tokenizer."""


class IngestError(CircuitcatError):
    """An ingest job was given input it cannot use (empty corpus, mismatched sets)."""


class InterventionError(IngestError):
    """An intervention names a feature, position or value it cannot act on."""
