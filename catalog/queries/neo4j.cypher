// Neo4j-only overrides of common.cypher.

// name: store_version
CALL dbms.components() YIELD name, versions, edition
RETURN name + ' ' + versions[0] + ' (' + edition + ')' AS version

// name: circuit_edges
// As in common.cypher, planned from each member's own outgoing edges: the common form makes
// Neo4j expand into every member pair (pairs x degree database hits; ~2x the server time on the
// toy circuit), this one reads each member's ATTRIBUTES edges once.
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(m:Feature)
WITH c, collect(m.uid) AS members
MATCH (c)-[:CONTAINS]->(a)
WHERE a.head IS NULL
MATCH (a)-[r:ATTRIBUTES]->(b:Feature)
WHERE b.uid IN members AND r.prompt STARTS WITH (c.task + '/')
RETURN a.uid AS src, b.uid AS dst, sum(r.w) AS total, count(DISTINCT r.prompt) AS n_prompts
ORDER BY src, dst
