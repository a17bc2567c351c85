// Named queries of the circuit catalog's comparisons (catalog/compare.py): shared members of two
// circuits, the members several circuits reuse, a circuit by uid, the circuits of a task.
// Both stores run them as written. Ties are broken by uid.

// name: circuit_by_uid
MATCH (c:Circuit {uid: $uid})
RETURN c.uid AS uid, c.name AS name, c.task AS task, c.`set` AS set_uid, c.method AS method,
       c.params AS params, c.n_features AS n_features, c.faithfulness AS faithfulness

// name: circuits_of_task
// The stored circuits of one task (any transcoder set).
MATCH (c:Circuit)
WHERE c.task = $task
RETURN c.uid AS uid, c.name AS name, c.`set` AS set_uid, c.n_features AS n_features
ORDER BY uid

// name: circuit_shared_features
// The features two circuits share, with their score in each (circuit uids $a and $b).
MATCH (a:Circuit {uid: $a})-[ka:CONTAINS]->(f:Feature)
MATCH (b:Circuit {uid: $b})-[kb:CONTAINS]->(f)
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, ka.score AS score_a,
       kb.score AS score_b
ORDER BY score_a DESC, uid

// name: circuit_shared_heads
// The attention heads two circuits share, with their score in each.
MATCH (a:Circuit {uid: $a})-[ka:CONTAINS]->(h:Head)
MATCH (b:Circuit {uid: $b})-[kb:CONTAINS]->(h)
RETURN h.uid AS uid, h.layer AS layer, h.head AS head, ka.score AS score_a, kb.score AS score_b
ORDER BY score_a DESC, uid

// name: feature_reuse
// The reuse question: features contained in at least $min_circuits circuits, with the circuit
// and the feature's score in each (one row per feature and circuit), most reused first.
MATCH (c:Circuit)-[:CONTAINS]->(f:Feature)
WITH f, count(DISTINCT c) AS n_circuits
WHERE n_circuits >= $min_circuits
MATCH (c:Circuit)-[k:CONTAINS]->(f)
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, n_circuits,
       c.uid AS circuit, c.name AS circuit_name, c.task AS task, k.score AS score
ORDER BY n_circuits DESC, uid, circuit

// name: head_reuse
// The same for attention heads.
MATCH (c:Circuit)-[:CONTAINS]->(h:Head)
WITH h, count(DISTINCT c) AS n_circuits
WHERE n_circuits >= $min_circuits
MATCH (c:Circuit)-[k:CONTAINS]->(h)
RETURN h.uid AS uid, h.layer AS layer, h.head AS head, n_circuits, c.uid AS circuit,
       c.name AS circuit_name, c.task AS task, k.score AS score
ORDER BY n_circuits DESC, uid, circuit
