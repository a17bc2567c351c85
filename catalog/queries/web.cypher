// Named read queries for `circuitcat serve` (cli/web/); both stores run them as written.
// Filters that may be off take '' (strings) or -1 (layers): both engines bind a typed value,
// where a null parameter has no type on Ladybug. Ties are broken by uid.

// name: web_features
// Features filtered by set, layer and description text (label, explanation or automatic
// description), sorted by one key ($sort: density, act_max, act_mean, else layer then index;
// $sign -1.0 for descending), one page of them. Features the corpus pass has not measured
// sort last either way.
MATCH (f:Feature)
WHERE ($set_uid = '' OR f.`set` = $set_uid) AND ($layer < 0 OR f.layer = $layer)
  AND ($label = '' OR toLower(coalesce(f.label, '') + ' ' + coalesce(f.explanation, '') + ' '
                              + coalesce(f.auto_description, ''))
                      CONTAINS toLower($label))
WITH f, CASE $sort
          WHEN 'density' THEN f.density
          WHEN 'act_max' THEN f.act_max
          WHEN 'act_mean' THEN f.act_mean
          ELSE f.layer * 1000000.0 + f.`index`
        END AS sort_key
RETURN f.uid AS uid, f.`set` AS set_uid, f.layer AS layer, f.`index` AS feature_index,
       f.density AS density, f.act_mean AS act_mean, f.act_max AS act_max, f.label AS label,
       f.top_logits AS top_logits,
       coalesce(f.label, f.explanation, f.auto_description) AS description
ORDER BY coalesce(sort_key * $sign, 1.0e300), uid
SKIP $offset
LIMIT $limit

// name: web_feature_count
// How many features web_features would page through.
MATCH (f:Feature)
WHERE ($set_uid = '' OR f.`set` = $set_uid) AND ($layer < 0 OR f.layer = $layer)
  AND ($label = '' OR toLower(coalesce(f.label, '') + ' ' + coalesce(f.explanation, '') + ' '
                              + coalesce(f.auto_description, ''))
                      CONTAINS toLower($label))
RETURN count(f) AS n

// name: web_features_reading_token
// Features a token's embedding excites most (input-invariant de-embedding), strongest first.
MATCH (t:Token)
WHERE t.text = $token
MATCH (t)-[r:DEEMBEDS]->(f:Feature)
WHERE ($set_uid = '' OR f.`set` = $set_uid) AND ($layer < 0 OR f.layer = $layer) AND r.w > 0
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, f.label AS label,
       coalesce(f.label, f.explanation, f.auto_description) AS description,
       max(r.w) AS w
ORDER BY w DESC, uid
LIMIT $limit

// name: web_features_promoting_token
// Features whose decoder direction raises a token's logit most, strongest first.
MATCH (t:Token)
WHERE t.text = $token
MATCH (f:Feature)-[r:PROMOTES]->(t)
WHERE ($set_uid = '' OR f.`set` = $set_uid) AND ($layer < 0 OR f.layer = $layer) AND r.w > 0
RETURN f.uid AS uid, f.layer AS layer, f.`index` AS feature_index, f.label AS label,
       coalesce(f.label, f.explanation, f.auto_description) AS description,
       max(r.w) AS w
ORDER BY w DESC, uid
LIMIT $limit

// name: web_feature_labels
// A feature's label history, newest first.
MATCH (f:Feature {uid: $uid})-[:HAS_LABEL]->(l:Label)
RETURN l.uid AS uid, l.text AS text, l.author AS author, l.created_at AS created_at
ORDER BY created_at DESC, uid
LIMIT $limit

// name: web_feature_circuits
// The stored circuits a feature belongs to.
MATCH (c:Circuit)-[k:CONTAINS]->(f:Feature {uid: $uid})
RETURN c.uid AS uid, c.name AS name, c.task AS task, k.score AS score
ORDER BY uid

// name: web_feature_prompt_inputs
// What feeds a feature in the stored prompt graphs, summed over prompts and positions (every
// source but heads, whose edges re-split the others), strongest first.
MATCH (a)-[r:ATTRIBUTES]->(f:Feature {uid: $uid})
WHERE a.head IS NULL
RETURN a.uid AS uid, a.layer AS layer, a.`index` AS feature_index, a.token_id AS token_id,
       a.text AS token, a.kind AS error_kind, sum(r.w) AS total, count(DISTINCT r.prompt) AS n_prompts
ORDER BY abs(total) DESC, uid
LIMIT $limit

// name: web_feature_prompt_outputs
// What a feature feeds in the stored prompt graphs (features and targets), summed over
// prompts and positions, strongest first.
MATCH (f:Feature {uid: $uid})-[r:ATTRIBUTES]->(b)
RETURN b.uid AS uid, b.layer AS layer, b.`index` AS feature_index, b.name AS target,
       sum(r.w) AS total, count(DISTINCT r.prompt) AS n_prompts
ORDER BY abs(total) DESC, uid
LIMIT $limit

// name: web_circuit_list
// Every stored circuit.
MATCH (c:Circuit)
RETURN c.uid AS uid, c.name AS name, c.task AS task, c.`set` AS set_uid, c.method AS method,
       c.n_features AS n_features, c.params AS params, c.faithfulness AS faithfulness
ORDER BY uid

// name: web_circuit
MATCH (c:Circuit {uid: $uid})
RETURN c.uid AS uid, c.name AS name, c.task AS task, c.`set` AS set_uid, c.method AS method,
       c.n_features AS n_features, c.params AS params, c.faithfulness AS faithfulness

// name: web_tasks
// Tasks with how many prompts each has.
MATCH (p:Prompt)-[:OF_TASK]->(t:Task)
RETURN t.uid AS uid, t.name AS name, t.metric AS metric, t.description AS description,
       count(p) AS n_prompts
ORDER BY uid

// name: web_prompts_matching
// Prompts whose text contains a string (any case).
MATCH (p:Prompt)
WHERE toLower(p.text) CONTAINS toLower($text)
RETURN p.uid AS uid, p.task AS task, p.text AS text, p.answer AS answer,
       p.start_year AS start_year
ORDER BY uid
LIMIT $limit

// name: web_pair_prompts
// Every stored prompt graph in which feature $src feeds feature $dst: the edge summed over
// positions and routes, strongest first (a question one JSON blob per graph cannot answer).
MATCH (a:Feature {uid: $src})-[r:ATTRIBUTES]->(b:Feature {uid: $dst})
WITH r.prompt AS prompt, sum(r.w) AS total, count(r) AS n_edges
MATCH (p:Prompt {uid: prompt})
RETURN prompt, p.text AS text, p.answer AS answer, p.start_year AS start_year, total, n_edges
ORDER BY abs(total) DESC, prompt
LIMIT $limit

// name: web_pair_weights
// The input-invariant virtual weights from feature $src into feature $dst, one per route.
MATCH (a:Feature {uid: $src})-[r:VIRTUAL_WEIGHT]->(b:Feature {uid: $dst})
RETURN r.via AS via, r.w AS w, r.`rank` AS w_rank
ORDER BY via
