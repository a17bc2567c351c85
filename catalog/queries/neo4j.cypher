// Neo4j-only overrides of common.cypher.

// name: store_version
CALL dbms.components() YIELD name, versions, edition
RETURN name + ' ' + versions[0] + ' (' + edition + ')' AS version
