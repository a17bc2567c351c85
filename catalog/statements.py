"""Write and schema statements generated from the closed schema in schema.py.

Labels, relationship types and property keys here come only from the schema enums, never from
user input; values always travel as parameters. Read queries a person would run live in the
named query files instead (queries/*.cypher).
"""

from __future__ import annotations

from .schema import NODE_PROPS, REL_SPECS, NodeKind, PropType, RelKind, quote


def node_merge(kind: NodeKind, props: list[str]) -> str:
    """Upsert nodes by uid, setting only the given properties (spelled out: Ladybug has no +=)."""
    sets = ", ".join(f"n.{quote(p)} = row.{quote(p)}" for p in props if p != "uid")
    set_clause = f" SET {sets}" if sets else ""
    return f"UNWIND $rows AS row MERGE (n:{kind} {{uid: row.uid}}){set_clause}"


def _edge_match(src: NodeKind, dst: NodeKind) -> str:
    # Two MATCH clauses, not one with a comma: the comma form is ~1000x slower on Ladybug.
    return f"UNWIND $rows AS row MATCH (a:{src} {{uid: row.src}}) MATCH (b:{dst} {{uid: row.dst}})"


def edge_merge(kind: RelKind, src: NodeKind, dst: NodeKind, props: list[str]) -> str:
    """Upsert edges identified by endpoints plus the kind's key properties."""
    key_props = REL_SPECS[kind].key
    key = ", ".join(f"{quote(k)}: row.{quote(k)}" for k in key_props)
    sets = ", ".join(f"r.{quote(p)} = row.{quote(p)}" for p in props if p not in key_props)
    pattern = f"(a)-[r:{kind} {{{key}}}]->(b)" if key else f"(a)-[r:{kind}]->(b)"
    set_clause = f" SET {sets}" if sets else ""
    return f"{_edge_match(src, dst)} MERGE {pattern}{set_clause}"


def edge_create(kind: RelKind, src: NodeKind, dst: NodeKind, props: list[str]) -> str:
    """Insert edges known to be new (no edge of this kind leaves any source yet)."""
    values = ", ".join(f"{quote(p)}: row.{quote(p)}" for p in props)
    return f"{_edge_match(src, dst)} CREATE (a)-[r:{kind} {{{values}}}]->(b)"


def edge_delete(kind: RelKind, src: NodeKind, dst: NodeKind) -> str:
    """Delete edges identified by endpoints plus the kind's key properties."""
    key = " AND ".join(f"r.{quote(k)} = row.{quote(k)}" for k in REL_SPECS[kind].key)
    where = f" WHERE {key}" if key else ""
    return f"{_edge_match(src, dst)} MATCH (a)-[r:{kind}]->(b){where} DELETE r"


def node_unset(kind: NodeKind, prop: str) -> str:
    """Remove one property (a name from NODE_PROPS) from the nodes in $uids."""
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) SET n.{quote(prop)} = NULL"


def node_delete(kind: NodeKind) -> str:
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) DETACH DELETE n"


def lock_nodes(kind: NodeKind) -> str:
    """Take write locks on the nodes in $uids (in list order: pass them sorted) until the
    transaction ends, changing nothing: Neo4j's documented way to serialise writers."""
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) SET n._lock = true REMOVE n._lock"


# Key properties worth filtering the existence check on: few distinct values per batch.
FILTER_KEYS = ("via", "prompt")


def count_existing(kind: RelKind, node: NodeKind, side: str, filters: list[str]) -> str:
    """Edges of `kind` leaving (side="src") or entering (side="dst") the nodes in $uids whose
    filter-key values are in $<key>_values: zero means the batch cannot repeat an edge."""
    pattern = f"(a:{node} {{uid: u}})-[r:{kind}]->()"
    if side == "dst":
        pattern = f"()-[r:{kind}]->(a:{node} {{uid: u}})"
    where = " AND ".join(f"r.{quote(k)} IN ${k}_values" for k in filters)
    where_clause = f" WHERE {where}" if where else ""
    return f"UNWIND $uids AS u MATCH {pattern}{where_clause} RETURN count(r) AS n"


def count_present(kind: NodeKind) -> str:
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) RETURN count(n) AS n"


def find_missing(kind: NodeKind) -> str:
    return (
        f"UNWIND $uids AS u OPTIONAL MATCH (n:{kind} {{uid: u}}) "
        "WITH u, n WHERE n IS NULL RETURN u AS uid LIMIT 5"
    )


def count_nodes(kind: NodeKind) -> str:
    return f"MATCH (n:{kind}) RETURN count(n) AS n"


def count_rels(kind: RelKind) -> str:
    return f"MATCH ()-[r:{kind}]->() RETURN count(r) AS n"


def ladybug_ddl() -> list[str]:
    """Typed node and relationship tables; IF NOT EXISTS keeps `init` idempotent."""
    stmts = []
    for kind, props in NODE_PROPS.items():
        cols = ", ".join(f"{quote(p)} {t.value}" for p, t in props.items())
        stmts.append(f"CREATE NODE TABLE IF NOT EXISTS {kind}(uid STRING PRIMARY KEY, {cols})")
    for rel, spec in REL_SPECS.items():
        pairs = ", ".join(f"FROM {a} TO {b}" for a, b in spec.pairs)
        cols = ", ".join(f"{quote(p)} {t.value}" for p, t in spec.props.items())
        stmts.append(f"CREATE REL TABLE IF NOT EXISTS {rel}({pairs}, {cols})")
    return stmts


# Secondary indexes that the named queries filter on (beyond the uid constraints).
NEO4J_INDEXES: dict[NodeKind, tuple[str, ...]] = {
    NodeKind.FEATURE: ("set", "layer"),
    NodeKind.TOKEN: ("model", "token_id"),
    NodeKind.PROMPT: ("task",),
}


def neo4j_ddl() -> list[str]:
    """Uniqueness constraints on uid (which also index it), then lookup indexes."""
    stmts = [
        f"CREATE CONSTRAINT {kind.lower()}_uid IF NOT EXISTS FOR (n:{kind}) REQUIRE n.uid IS UNIQUE"
        for kind in NodeKind
    ]
    for kind, props in NEO4J_INDEXES.items():
        on = ", ".join(f"n.{quote(p)}" for p in props)
        name = f"{kind.lower()}_{'_'.join(props)}"
        stmts.append(f"CREATE INDEX {name} IF NOT EXISTS FOR (n:{kind}) ON ({on})")
    stmts.append(
        "CREATE INDEX attributes_prompt IF NOT EXISTS FOR ()-[r:ATTRIBUTES]-() ON (r.prompt)"
    )
    return stmts


def is_float(kind: NodeKind | RelKind, prop: str) -> bool:
    props = NODE_PROPS[kind] if isinstance(kind, NodeKind) else REL_SPECS[kind].props
    return props.get(prop) is PropType.FLOAT


def read_nodes(kind: NodeKind) -> str:
    """Every node of a kind with all its schema properties (for copying a catalog)."""
    cols = ", ".join(f"n.{quote(p)} AS {quote(p)}" for p in NODE_PROPS[kind])
    return f"MATCH (n:{kind}) RETURN n.uid AS uid, {cols} ORDER BY uid"


def read_edges(kind: RelKind, src: NodeKind, dst: NodeKind) -> str:
    """Every edge of a kind between one node pair, with all its properties."""
    cols = ", ".join(f"r.{quote(p)} AS {quote(p)}" for p in REL_SPECS[kind].props)
    return f"MATCH (a:{src})-[r:{kind}]->(b:{dst}) RETURN a.uid AS src, b.uid AS dst, {cols}"


# ---- reads for `store import-files` (neo4j_import.py): a whole catalog, a chunk at a time ----


def node_uids(kind: NodeKind) -> str:
    """The uid of every node of a kind."""
    return f"MATCH (n:{kind}) RETURN n.uid AS uid"


def read_nodes_in(kind: NodeKind) -> str:
    """read_nodes for the nodes in $uids."""
    cols = ", ".join(f"n.{quote(p)} AS {quote(p)}" for p in NODE_PROPS[kind])
    return f"UNWIND $uids AS u MATCH (n:{kind} {{uid: u}}) RETURN n.uid AS uid, {cols}"


def read_edges_from(kind: RelKind, src: NodeKind, dst: NodeKind) -> str:
    """read_edges for the edges leaving the nodes in $uids."""
    cols = ", ".join(f"r.{quote(p)} AS {quote(p)}" for p in REL_SPECS[kind].props)
    return (
        f"UNWIND $uids AS u MATCH (a:{src} {{uid: u}})-[r:{kind}]->(b:{dst}) "
        f"RETURN a.uid AS src, b.uid AS dst, {cols}"
    )


def node_offset_end(kind: NodeKind) -> str:
    """Ladybug only: one past the largest internal offset of a kind's nodes (null when none)."""
    return f"MATCH (n:{kind}) RETURN max(offset(id(n))) + 1 AS n"


def read_nodes_between(kind: NodeKind) -> str:
    """Ladybug only: read_nodes for the nodes at internal offsets $lo <= offset < $hi."""
    cols = ", ".join(f"n.{quote(p)} AS {quote(p)}" for p in NODE_PROPS[kind])
    return (
        f"MATCH (n:{kind}) WHERE offset(id(n)) >= $lo AND offset(id(n)) < $hi "
        f"RETURN n.uid AS uid, {cols}"
    )


def read_edges_between(kind: RelKind, src: NodeKind, dst: NodeKind) -> str:
    """Ladybug only: read_edges for the edges leaving the nodes at offsets $lo <= offset < $hi."""
    cols = ", ".join(f"r.{quote(p)} AS {quote(p)}" for p in REL_SPECS[kind].props)
    return (
        f"MATCH (a:{src})-[r:{kind}]->(b:{dst}) WHERE offset(id(a)) >= $lo AND "
        f"offset(id(a)) < $hi RETURN a.uid AS src, b.uid AS dst, {cols}"
    )
