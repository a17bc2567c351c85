// Research questions as named queries (catalog/research.py, catalog/descriptions.py; the
// commands `prompt show`, `prompt compare`, `feature find`, `feature describe`). Both stores
// run them as written. A feature's description is the best it has: its label, else the
// explainer's explanation, else its automatic description. Filters that may be off take '' (strings) or -1 (layers).

// name: transcoder_set_layers
MATCH (s:TranscoderSet {uid: $uid})
RETURN s.layers AS layers

// name: feature_description_inputs
// What an automatic description is built from, for one layer of a set (measured features only).
MATCH (f:Feature)
WHERE f.`set` = $set_uid AND f.layer = $layer AND f.density IS NOT NULL
RETURN f.uid AS uid, f.layer AS layer, f.density AS density, f.top_contexts AS top_contexts,
       f.top_logits AS top_logits
ORDER BY uid

// name: prompt_position_features
// The features active at one position of a prompt's stored graph for one set, strongest first:
// each one's activation there is the sum of what is stored into it at that position.
MATCH (a)-[r:ATTRIBUTES]->(f:Feature)
WHERE r.prompt = $prompt AND r.dst_pos = $pos AND a.head IS NULL AND f.`set` = $set_uid
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, sum(r.w) AS activation,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY activation DESC, uid

// name: prompt_metric_inputs
// What drives a prompt's metric directly in its stored graph for one set: every node's edge
// into the target (features, token embeddings, error and bias terms), strongest first. Tokens
// belong to no set: theirs are the edges written by the runs that wrote this set's graph.
MATCH (e:Error)-[q:ATTRIBUTES]->(:Target)
WHERE q.prompt = $prompt AND e.`set` = $set_uid
WITH collect(DISTINCT q.run) AS runs
MATCH (a)-[r:ATTRIBUTES]->(g:Target)
WHERE r.prompt = $prompt AND a.head IS NULL AND r.run IN runs
  AND (a.`set` IS NULL OR a.`set` = $set_uid)
RETURN a.uid AS uid, r.src_pos AS pos, a.layer AS layer, a.`index` AS feature_index,
       a.text AS token, a.kind AS error_kind, g.name AS target,
       coalesce(a.label, a.explanation, a.auto_description) AS description,
       sum(r.w) AS w
ORDER BY abs(w) DESC, uid, pos
LIMIT $limit

// name: prompt_features
// Every feature in a prompt's stored graph for one set: its summed activation over the
// positions where it is active, and at how many positions that is.
MATCH (a)-[r:ATTRIBUTES]->(f:Feature)
WHERE r.prompt = $prompt AND a.head IS NULL AND f.`set` = $set_uid
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, sum(r.w) AS activation,
       count(DISTINCT r.dst_pos) AS n_positions
ORDER BY activation DESC, uid

// name: prompt_shared_features
// The features two prompts' stored graphs (one set) share, with each prompt's activation summed
// over positions; strongest first by the smaller of the two.
MATCH (x)-[r:ATTRIBUTES]->(f:Feature)
WHERE r.prompt = $prompt_a AND x.head IS NULL AND f.`set` = $set_uid
WITH f, sum(r.w) AS activation_a, count(DISTINCT r.dst_pos) AS n_positions_a
MATCH (y)-[s:ATTRIBUTES]->(f)
WHERE s.prompt = $prompt_b AND y.head IS NULL
WITH f, activation_a, n_positions_a, sum(s.w) AS activation_b,
     count(DISTINCT s.dst_pos) AS n_positions_b
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, activation_a,
       activation_b, n_positions_a, n_positions_b,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY CASE WHEN activation_a < activation_b THEN activation_a ELSE activation_b END DESC, uid

// name: features_reading_tokens
// Features whose encoder reads any of the tokens' embeddings (stored de-embedding, w > 0),
// strongest first.
MATCH (t:Token)-[r:DEEMBEDS]->(f:Feature)
WHERE t.text IN $tokens AND r.w > 0 AND ($set_uid = '' OR f.`set` = $set_uid)
  AND ($layer < 0 OR f.layer = $layer)
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, max(r.w) AS read_w,
       count(DISTINCT t.text) AS n_read,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY read_w DESC, uid
LIMIT $limit

// name: features_promoting_tokens
// Features among whose stored top logits are the tokens (w > 0): most of them first, then by
// the summed weight.
MATCH (f:Feature)-[r:PROMOTES]->(t:Token)
WHERE t.text IN $tokens AND r.w > 0 AND ($set_uid = '' OR f.`set` = $set_uid)
  AND ($layer < 0 OR f.layer = $layer)
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index,
       count(DISTINCT t.text) AS n_promoted, sum(r.w) AS promote_w,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY n_promoted DESC, promote_w DESC, uid
LIMIT $limit

// name: features_reading_and_promoting
// Features that read any of $reads (de-embedding, w > 0) and promote any of $promotes (top
// logits, w > 0): most promoted tokens first, then the strongest read.
MATCH (t:Token)-[d:DEEMBEDS]->(f:Feature)
WHERE t.text IN $reads AND d.w > 0 AND ($set_uid = '' OR f.`set` = $set_uid)
  AND ($layer < 0 OR f.layer = $layer)
WITH f, max(d.w) AS read_w, count(DISTINCT t.text) AS n_read
MATCH (f)-[p:PROMOTES]->(u:Token)
WHERE u.text IN $promotes AND p.w > 0
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, read_w, n_read,
       count(DISTINCT u.text) AS n_promoted, sum(p.w) AS promote_w,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY n_promoted DESC, read_w DESC, uid
LIMIT $limit
