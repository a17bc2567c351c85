// Named read queries that both stores run as written. Parameters are $-prefixed.
// Ties are broken by uid so both stores return rows in the same order.

// name: models
MATCH (m:Model)
RETURN m.uid AS uid, m.name AS name, m.source AS source, m.n_layers AS n_layers,
       m.d_model AS d_model, m.n_heads AS n_heads, m.d_vocab AS d_vocab, m.arch AS arch
ORDER BY uid

// name: model
MATCH (m:Model {uid: $uid})
RETURN m.uid AS uid, m.name AS name, m.source AS source, m.n_layers AS n_layers,
       m.d_model AS d_model, m.n_heads AS n_heads, m.d_vocab AS d_vocab, m.arch AS arch

// name: set_ln_scales
MATCH (t:TranscoderSet {uid: $uid})
RETURN t.ln2_scale_mean AS scales

// name: transcoder_sets
MATCH (s:TranscoderSet)
RETURN s.uid AS uid, s.name AS name, s.model AS model, s.format AS format,
       s.source AS source, s.d_transcoder AS d_transcoder, s.layers AS layers,
       s.sha256 AS sha256
ORDER BY uid

// name: transcoder_set
MATCH (s:TranscoderSet {uid: $uid})-[:FOR_MODEL]->(m:Model)
RETURN s.uid AS uid, s.name AS name, s.format AS format, s.source AS source,
       s.processing AS processing, s.activation AS activation, m.uid AS model,
       m.name AS model_name, m.source AS model_source

// name: feature
MATCH (f:Feature {uid: $uid})
RETURN f.uid AS uid, f.`set` AS set_uid, f.layer AS layer, f.`index` AS feature_index,
       f.density AS density, f.act_mean AS act_mean, f.act_max AS act_max,
       f.act_hist AS act_hist, f.top_logits AS top_logits, f.top_contexts AS top_contexts,
       f.label AS label, f.auto_description AS auto_description, f.explanation AS explanation,
       f.explanation_score AS explanation_score, f.explanation_meta AS explanation_meta

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
// The WITH between the hops matters on Ladybug 0.22: without it, two hops that start at
// parallel edges (resid and attn:L.H into the same node) lose rows.
MATCH (a:Feature {uid: $uid})-[r1:VIRTUAL_WEIGHT]->(b:Feature)
WITH r1, b
MATCH (b)-[r2:VIRTUAL_WEIGHT]->(c:Feature)
RETURN c.uid AS uid, sum(r1.w * r2.w) AS score, count(b) AS paths
ORDER BY abs(score) DESC, uid
LIMIT $limit

// name: year_prompts_to_upgrade
// Year-task prompts written by a circuitcat older than the start_year property: their answer
// holds the start year YY (catalog/upgrade.py rewrites them on a writable open).
MATCH (p:Prompt)
WHERE p.task IN ['greater-than', 'less-than'] AND p.start_year IS NULL
RETURN p.uid AS uid, p.task AS task, p.answer AS answer
ORDER BY uid

// name: prompts_of_task
MATCH (p:Prompt)-[:OF_TASK]->(t:Task {uid: $task})
RETURN p.uid AS uid, p.text AS text, p.answer AS answer, p.start_year AS start_year,
       p.metric_value AS metric_value
ORDER BY uid
LIMIT $limit

// name: runs
MATCH (r:Run)
RETURN r.uid AS uid, r.kind AS kind, r.status AS status, r.started_at AS started_at,
       r.finished_at AS finished_at, r.params AS params
ORDER BY started_at DESC, uid
LIMIT $limit

// name: run_status
// How many runs of each kind ended how: done, failed, or still running.
MATCH (r:Run)
RETURN r.kind AS kind, r.status AS status, count(r) AS n
ORDER BY kind, status

// name: running_runs
// Runs not finished, with their last heartbeat (catalog/runs.py decides which are stale).
MATCH (r:Run)
WHERE r.status = 'running'
RETURN r.uid AS uid, r.kind AS kind, r.started_at AS started_at, r.heartbeat_at AS heartbeat_at
ORDER BY started_at, uid

// name: set_feature_count
MATCH (f:Feature)
WHERE f.`set` = $set_uid
RETURN count(f) AS n

// ---- per-prompt attribution graphs and circuits (ingest/prompts.py, ingest/circuits.py) ----

// name: attributed_prompts
// The task's prompts whose attribution graph for a transcoder set is fully stored: the set's
// remainder edge into the task's target is the last edge a prompt graph writes.
MATCH (e:Error)-[r:ATTRIBUTES]->(g:Target)
WHERE e.`set` = $set_uid AND e.kind = 'remainder' AND g.task = $task
MATCH (p:Prompt)
WHERE p.uid = r.prompt
RETURN DISTINCT p.uid AS uid, p.text AS text, p.answer AS answer, p.start_year AS start_year,
       p.metric_value AS metric_value
ORDER BY uid

// name: attributed_sets
// The transcoder sets with stored prompt graphs for a task, and how many prompts each has.
MATCH (e:Error)-[r:ATTRIBUTES]->(g:Target)
WHERE e.kind = 'remainder' AND g.task = $task
RETURN e.`set` AS set_uid, count(DISTINCT r.prompt) AS n_prompts
ORDER BY set_uid

// name: prompt_attributions
// Every stored ATTRIBUTES edge of the given prompts, with what identifies its endpoints: a
// feature has an index, a token a token_id, an error node a kind, a head a head, a target a task.
MATCH (a)-[r:ATTRIBUTES]->(b)
WHERE r.prompt IN $prompts
RETURN r.prompt AS prompt, a.uid AS src, b.uid AS dst, a.`set` AS src_set, b.`set` AS dst_set,
       a.`index` AS src_index, a.token_id AS src_token, a.kind AS src_error, a.head AS src_head,
       a.layer AS src_layer,
       b.`index` AS dst_index, b.task AS dst_task, b.layer AS dst_layer,
       r.src_pos AS src_pos, r.dst_pos AS dst_pos, r.via AS via, r.w AS w
ORDER BY prompt, src, dst, src_pos, dst_pos, via

// name: prompt
MATCH (p:Prompt {uid: $uid})
RETURN p.uid AS uid, p.task AS task, p.text AS text, p.tokens AS tokens, p.answer AS answer,
       p.start_year AS start_year, p.metric_value AS metric_value

// name: prompt_sets
// The transcoder sets with a fully stored attribution graph for one prompt.
MATCH (e:Error)-[r:ATTRIBUTES]->(g:Target)
WHERE r.prompt = $prompt AND e.kind = 'remainder'
RETURN DISTINCT e.`set` AS set_uid
ORDER BY set_uid

// name: prompt_graph
// One prompt's stored ATTRIBUTES edges with what the graph JSON export needs of their ends
// (catalog/graph_json.py); a feature's label is its best description. Head sources are left
// out: they re-split the other edges by route.
MATCH (a)-[r:ATTRIBUTES]->(b)
WHERE r.prompt = $prompt AND a.head IS NULL
RETURN a.uid AS src, a.`set` AS src_set, a.layer AS src_layer, a.`index` AS src_index,
       a.token_id AS src_token, a.kind AS src_kind,
       coalesce(a.label, a.explanation, a.auto_description) AS src_label,
       b.uid AS dst, b.`set` AS dst_set, b.layer AS dst_layer, b.`index` AS dst_index,
       b.kind AS dst_kind, b.name AS dst_name,
       coalesce(b.label, b.explanation, b.auto_description) AS dst_label,
       r.src_pos AS src_pos, r.dst_pos AS dst_pos, r.via AS via, r.run AS run, r.w AS w
ORDER BY src, dst, src_pos, dst_pos, via

// name: set_live_feature_count
// Features that fired in the corpus pass (density > 0); 0 when the pass has not run.
MATCH (f:Feature)
WHERE f.`set` = $set_uid AND f.density > 0
RETURN count(f) AS n

// name: set_feature_means
// Per feature of a set, what the corpus pass measured (only features it has measured).
MATCH (f:Feature)
WHERE f.`set` = $set_uid AND f.density IS NOT NULL
RETURN f.layer AS layer, f.`index` AS feature_index, f.density AS density, f.act_mean AS act_mean
ORDER BY layer, feature_index

// name: circuits
// Circuits by name (one per transcoder set and task).
MATCH (c:Circuit)
WHERE c.name = $circuit_name
RETURN c.uid AS uid, c.name AS name, c.task AS task, c.`set` AS set_uid, c.method AS method,
       c.params AS params, c.n_features AS n_features, c.faithfulness AS faithfulness
ORDER BY uid

// name: circuit_features
// A circuit's features, strongest first, with what the corpus pass recorded about them.
MATCH (c:Circuit {uid: $uid})-[k:CONTAINS]->(f:Feature)
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, k.score AS score,
       f.density AS density, f.act_mean AS act_mean, f.label AS label, f.top_logits AS top_logits,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY score DESC, uid

// name: circuit_heads
MATCH (c:Circuit {uid: $uid})-[k:CONTAINS]->(h:Head)
RETURN h.uid AS uid, h.layer AS layer, h.head AS head, k.score AS score
ORDER BY score DESC, uid

// name: circuit_tokens
MATCH (c:Circuit {uid: $uid})-[k:CONTAINS]->(t:Token)
RETURN t.uid AS uid, t.token_id AS token_id, t.text AS token, k.score AS score
ORDER BY score DESC, uid

// name: circuit_feature_prompts
// Per circuit feature, the task prompts in whose stored graphs it has an outgoing edge, each by
// its start year YY (year tasks) or else its answer: the range of prompts it works on. One row
// per feature and key, with how many prompts have it (catalog/circuits.py prompts_by_feature).
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(f:Feature)
MATCH (f)-[r:ATTRIBUTES]->(x)
WITH c, f, collect(DISTINCT r.prompt) AS prompts
UNWIND prompts AS prompt
MATCH (p:Prompt {uid: prompt})
WHERE p.task = c.task
RETURN f.uid AS uid, coalesce(p.start_year, p.answer) AS key, count(p) AS n_prompts
ORDER BY uid, key

// name: circuit_edges
// The circuit's mean graph, between members: ATTRIBUTES edges from member features and tokens
// into member features, summed over the task's prompts (all positions and routes), with the
// number of prompts each occurs in. Prompt uids start with their task's name and '/'.
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(b:Feature)
MATCH (c)-[:CONTAINS]->(a)
MATCH (a)-[r:ATTRIBUTES]->(b)
WHERE r.prompt STARTS WITH (c.task + '/') AND a.head IS NULL
RETURN a.uid AS src, b.uid AS dst, sum(r.w) AS total, count(DISTINCT r.prompt) AS n_prompts
ORDER BY src, dst

// name: circuit_target_edges
// Member features into the task's target, summed over prompts.
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(f:Feature)
MATCH (f)-[r:ATTRIBUTES]->(g:Target)
WHERE g.task = c.task
RETURN f.uid AS src, g.uid AS dst, g.name AS target, sum(r.w) AS total,
       count(DISTINCT r.prompt) AS n_prompts
ORDER BY src, dst

// name: circuit_activations
// Per member feature, the sum over the task's prompts and positions of its stored inputs
// (every source but heads, whose edges decompose the others): the sum of its activations.
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(f:Feature)
MATCH (a)-[r:ATTRIBUTES]->(f)
WHERE r.prompt STARTS WITH (c.task + '/') AND a.head IS NULL
RETURN f.uid AS uid, sum(r.w) AS total, count(DISTINCT r.prompt) AS n_prompts
ORDER BY uid
