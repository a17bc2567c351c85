"""What a query without --write may do, checked before it runs (docs/neo4j.md, "Read-only").

A read-only query reads the catalog and nothing else: it does not change it, touch files, fetch
URLs, change settings or end other transactions. The engines enforce the first part (Ladybug
runs the query in a READ ONLY transaction, and the CLI opens the file read-only; Neo4j runs it
in a server-enforced read transaction); this module refuses the rest, which a read transaction
still allows:

- Ladybug: the text is lexed the way the engine lexes it (strings with backslash escapes,
  backticked names, // and /* */ comments), so a keyword inside a string or comment is inert
  and one outside is seen however it is spelled. One statement, no transaction control, no
  COPY / LOAD / EXPORT / IMPORT / ATTACH / INSTALL / USE / CHECKPOINT, no setting changes
  (`CALL threads=1`), and CALL only for the engine's read-only catalog functions (its file
  readers can crash the process).
- Neo4j: the server plans the query (EXPLAIN runs nothing) and the plan is walked: no LoadCSV,
  no administration, SHOW/TERMINATE of transactions or settings, no other database, and CALL
  only for a short list of read-only procedures.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import QueryError, ReadOnlyViolationError

# Appended to an engine's error where Cypher that one store runs may fail on the other.
PORTABLE_CYPHER = ' (Cypher that runs on both stores: docs/neo4j.md, "Cypher on both stores")'

_LEXER = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>//[^\r\n]*|/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<quoted>`(?:[^`]|``)*`)
    | (?P<param>\$(?:\w+|`(?:[^`]|``)*`))
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<word>[^\W\d]\w*)
    | (?P<symbol>[^\s\w'"`$/]|/(?![/*]))
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # word, string, quoted, param, number, symbol
    text: str


def tokens(text: str) -> list[Token]:
    """The query's tokens without spaces and comments. An unterminated string, name or comment
    is a QueryError: the engine would fail on it too, and guessing where it ends is unsafe."""
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _LEXER.match(text, pos)
        if match is None:
            what = {"'": "string", '"': "string", "`": "name", "/": "comment"}.get(text[pos], "")
            raise QueryError(f"unterminated {what or 'token'} at character {pos} of the query")
        kind = str(match.lastgroup)
        if kind not in ("space", "comment"):
            out.append(Token(kind, match.group()))
        pos = match.end()
    return out


def parameter_names(text: str) -> set[str]:
    """The $parameters a query uses."""
    return {t.text[1:].strip("`") for t in tokens(text) if t.kind == "param"}


# ---- Ladybug ---------------------------------------------------------------------------------

# Clauses that end the read-only transaction, reach the file system or change the database.
LADYBUG_REFUSED = frozenset(
    {
        "BEGIN",
        "COMMIT",
        "ROLLBACK",
        "CHECKPOINT",
        "COPY",
        "LOAD",
        "EXPORT",
        "IMPORT",
        "ATTACH",
        "USE",
        "INSTALL",
        "UNINSTALL",
    }
)
# Table functions that only read the catalog's own schema and state.
LADYBUG_CALLS = frozenset(
    {
        "catalog_version",
        "current_setting",
        "db_version",
        "show_attached_databases",
        "show_connection",
        "show_functions",
        "show_graphs",
        "show_indexes",
        "show_loaded_extensions",
        "show_macros",
        "show_official_extensions",
        "show_projected_graphs",
        "show_sequences",
        "show_tables",
        "show_warnings",
        "stats_info",
        "storage_info",
        "storage_version",
        "table_info",
    }
)
_WRITE_HINT = "pass --write to allow it"


def _statements(toks: list[Token]) -> list[list[Token]]:
    parts: list[list[Token]] = [[]]
    for t in toks:
        if t.kind == "symbol" and t.text == ";":
            parts.append([])
        else:
            parts[-1].append(t)
    return [p for p in parts if p]


def check_ladybug(text: str) -> None:
    """Refuse (ReadOnlyViolationError) what a READ ONLY transaction on Ladybug still allows."""
    statements = _statements(tokens(text))
    if len(statements) != 1:
        raise ReadOnlyViolationError(
            f"a read-only query is one statement; this text has {len(statements)}; "
            f"{_WRITE_HINT}, or run them one at a time"
        )
    toks = statements[0]
    for i, t in enumerate(toks):
        if t.kind != "word" or (i and toks[i - 1].text == "."):
            continue  # a property name after '.' is data, whatever it is called
        word = t.text.upper()
        if word in LADYBUG_REFUSED:
            raise ReadOnlyViolationError(
                f"{word} is not allowed in a read-only query (it ends the transaction or reaches "
                f"outside the catalog); {_WRITE_HINT} (a name spelled {t.text} needs backticks)"
            )
        if word == "CALL":
            _check_ladybug_call(toks[i + 1 : i + 3])


def _check_ladybug_call(following: list[Token]) -> None:
    name = following[0].text if following and following[0].kind == "word" else ""
    if len(following) == 2 and following[1].text == "=":
        raise ReadOnlyViolationError(f"CALL {name}=... changes a setting; {_WRITE_HINT}")
    if name.lower() not in LADYBUG_CALLS:
        raise ReadOnlyViolationError(
            f"CALL {name or '...'} is not one of the read-only catalog functions "
            f"({', '.join(sorted(LADYBUG_CALLS))}); {_WRITE_HINT}"
        )


# ---- Neo4j -----------------------------------------------------------------------------------

# Procedures that only describe the catalog or the server's version.
NEO4J_PROCEDURES = frozenset(
    {
        "db.info",
        "db.labels",
        "db.ping",
        "db.propertyKeys",
        "db.relationshipTypes",
        "db.schema.nodeTypeProperties",
        "db.schema.relTypeProperties",
        "db.schema.visualization",
        "dbms.components",
        "dbms.info",
    }
)
# Plan operators that read only the catalog's schema or the procedure list.
_NEO4J_SHOW_ALLOWED = frozenset(
    {"ShowIndexes", "ShowConstraints", "ShowProcedures", "ShowFunctions"}
)
_PROCEDURE = re.compile(r"^\s*([\w.]+)\s*\(")


def plan_operators(plan: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """(operator, database, details) for every operator of an EXPLAIN plan, root first."""
    op, _, db = str(plan.get("operatorType", "")).partition("@")
    details = str(plan.get("args", {}).get("Details", ""))
    yield op, db, details
    for child in plan.get("children", []):
        yield from plan_operators(child)


def check_neo4j_plan(plan: Mapping[str, Any], database: str) -> None:
    """Refuse (ReadOnlyViolationError) what a read transaction on Neo4j still allows."""
    for op, db, details in plan_operators(plan):
        if db and db != database:
            raise ReadOnlyViolationError(
                f"the query reads database {db!r}, not the catalog's {database!r}; {_WRITE_HINT}"
            )
        if op == "LoadCSV":
            raise ReadOnlyViolationError(
                f"LOAD CSV makes the server read files or fetch URLs; {_WRITE_HINT}"
            )
        if op.startswith(("Terminate", "AdministrationCommand")) or (
            op.startswith("Show") and op not in _NEO4J_SHOW_ALLOWED
        ):
            raise ReadOnlyViolationError(f"{op} acts on the server, not the catalog; {_WRITE_HINT}")
        if op == "ProcedureCall":
            match = _PROCEDURE.match(details)
            name = match.group(1) if match else details
            if name not in NEO4J_PROCEDURES:
                raise ReadOnlyViolationError(
                    f"procedure {name} is not on the read-only list "
                    f"({', '.join(sorted(NEO4J_PROCEDURES))}); {_WRITE_HINT}"
                )


# ---- parameter types --------------------------------------------------------------------------

_TYPE_WORDS = {"STRING": "text", "INT64": "an integer", "DOUBLE": "a number"}


def _prop_types() -> dict[str, set[str]]:
    """Property name -> the types it has in the schema's node and relationship tables."""
    from .schema import NODE_PROPS, REL_SPECS

    types: dict[str, set[str]] = {"uid": {"STRING"}, "run": {"STRING"}}
    tables = [*NODE_PROPS.values(), *(spec.props for spec in REL_SPECS.values())]
    for props in tables:
        for name, ptype in props.items():
            types.setdefault(name, set()).add(str(ptype))
    return types


def parameter_types(text: str) -> dict[str, str]:
    """The type each $parameter needs, where the query says so plainly: compared with a stored
    property (`{layer: $layer}`, `f.uid = $uid`, `$x = f.uid`) or used by LIMIT/SKIP."""
    toks = tokens(text)
    props = _prop_types()
    needs: dict[str, str] = {}

    def prop_at(i: int) -> str | None:
        return toks[i].text.strip("`") if 0 <= i < len(toks) else None

    for i, t in enumerate(toks):
        if t.kind != "param":
            continue
        name = t.text[1:].strip("`")
        before = toks[i - 1].text.upper() if i else ""
        prop = None
        if before in ("LIMIT", "SKIP"):
            needs[name] = "INT64"
            continue
        if before == ":" and i >= 2 and toks[i - 2].kind in ("word", "quoted"):
            prop = prop_at(i - 2)  # {prop: $p}
        elif before in ("=", "<>") and i >= 3 and toks[i - 3].text == ".":
            prop = prop_at(i - 2)  # x.prop = $p
        elif i + 3 < len(toks) and toks[i + 1].text in ("=", "<>") and toks[i + 3].text == ".":
            prop = prop_at(i + 4)  # $p = x.prop
        found = props.get(prop or "", set())
        if len(found) == 1 and next(iter(found)) in _TYPE_WORDS:
            needs[name] = next(iter(found))
    return needs


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "null" if value is None else "a list" if isinstance(value, list) else "an object"


def check_parameter_types(text: str, params: Mapping[str, Any]) -> None:
    """QueryError naming a parameter whose value has the wrong type for the query (docs/neo4j.md,
    "Parameters"), before the engine fails on it with a cast error."""
    for name, needed in parameter_types(text).items():
        if name not in params or params[name] is None:
            continue
        value, given = params[name], _kind(params[name])
        ok = {
            "STRING": isinstance(value, str),
            "INT64": isinstance(value, int) and not isinstance(value, bool),
            "DOUBLE": isinstance(value, int | float) and not isinstance(value, bool),
        }[needed]
        if not ok:
            fix = f"-p '{name}=\"{value}\"'" if needed == "STRING" else f"-p {name}=<number>"
            raise QueryError(
                f"parameter {name} needs {_TYPE_WORDS[needed]} ({needed}) but got {given} "
                f"({json.dumps(value)}): -p values are read as JSON where they parse, so write "
                f'{fix} (docs/neo4j.md, "Parameters")'
            )
