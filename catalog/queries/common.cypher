// Named read queries that both stores run as written. Parameters are $-prefixed.
// Ties are broken by uid so both stores return rows in the same order.

// name: models
MATCH (m:Model)
RETURN m.uid AS uid, m.name AS name, m.source AS source, m.n_layers AS n_layers,
       m.d_model AS d_model, m.n_heads AS n_heads, m.d_vocab AS d_vocab, m.arch AS arch
ORDER BY uid

// name: transcoder_sets
MATCH (s:TranscoderSet)
RETURN s.uid AS uid, s.name AS name, s.model AS model, s.format AS format,
       s.d_transcoder AS d_transcoder, s.layers AS layers, s.sha256 AS sha256
ORDER BY uid

// name: feature
MATCH (f:Feature {uid: $uid})
RETURN f.uid AS uid, f.`set` AS set_uid, f.layer AS layer, f.`index` AS feature_index,
       f.density AS density, f.act_mean AS act_mean, f.act_max AS act_max,
       f.act_hist AS act_hist, f.top_logits AS top_logits, f.top_contexts AS top_contexts,
       f.label AS label

// name: features_in_layer
MATCH (f:Feature)
WHERE f.`set` = $set_uid AND f.layer = $layer
RETURN f.uid AS uid, f.`index` AS feature_index, f.density AS density, f.act_max AS act_max
ORDER BY feature_index
LIMIT $limit

// name: feature_sources
// The features a feature reads from through input-invariant virtual weights, strongest first.
MATCH (s:Feature)-[r:VIRTUAL_WEIGHT]->(t:Feature {uid: $uid})
RETURN s.uid AS source, s.layer AS layer, r.via AS via, r.w AS w, r.`rank` AS w_rank
ORDER BY abs(r.w) DESC, source, via
LIMIT $limit

// name: feature_targets
MATCH (s:Feature {uid: $uid})-[r:VIRTUAL_WEIGHT]->(t:Feature)
RETURN t.uid AS target, t.layer AS layer, r.via AS via, r.w AS w, r.`rank` AS w_rank
ORDER BY abs(r.w) DESC, target, via
LIMIT $limit

// name: feature_tokens
// The tokens whose embeddings most excite a feature (de-embedding), most positive first.
MATCH (t:Token)-[r:DEEMBEDS]->(f:Feature {uid: $uid})
RETURN t.text AS token, t.token_id AS token_id, r.via AS via, r.w AS w
ORDER BY w DESC, token_id, via
LIMIT $limit

// name: feature_logits
// The logits a feature promotes (positive w) and suppresses (negative w).
MATCH (f:Feature {uid: $uid})-[r:PROMOTES]->(t:Token)
RETURN t.text AS token, t.token_id AS token_id, r.w AS w
ORDER BY w DESC, token_id
LIMIT $limit

// name: two_hop_targets
// Features two virtual-weight hops downstream of a feature, scored by the summed path products.
MATCH (a:Feature {uid: $uid})-[r1:VIRTUAL_WEIGHT]->(b:Feature)
MATCH (b)-[r2:VIRTUAL_WEIGHT]->(c:Feature)
RETURN c.uid AS uid, sum(r1.w * r2.w) AS score, count(b) AS paths
ORDER BY abs(score) DESC, uid
LIMIT $limit

// name: prompts_of_task
MATCH (p:Prompt)-[:OF_TASK]->(t:Task {uid: $task})
RETURN p.uid AS uid, p.text AS text, p.answer AS answer, p.metric_value AS metric_value
ORDER BY uid
LIMIT $limit

// name: runs
MATCH (r:Run)
RETURN r.uid AS uid, r.kind AS kind, r.status AS status, r.started_at AS started_at,
       r.finished_at AS finished_at, r.params AS params
ORDER BY started_at DESC, uid
LIMIT $limit

// name: set_feature_count
MATCH (f:Feature)
WHERE f.`set` = $set_uid
RETURN count(f) AS n
