// Ladybug-only overrides of common.cypher.

// name: store_version
CALL db_version() RETURN 'Ladybug ' + version AS version
