// Saved interventions (`circuitcat intervention ...`, ingest/interventions). Both stores run
// these as written.

// name: interventions
// The saved interventions, newest first.
MATCH (i:Intervention)
RETURN i.uid AS uid, i.op AS op, i.set AS set_uid, i.task AS task, i.prompt AS prompt,
       i.n_prompts AS n_prompts, i.metric AS metric, i.metric_before AS before,
       i.metric_after AS after, i.frozen AS frozen, i.predicted AS predicted,
       i.flagged AS flagged, i.author AS author, i.created_at AS created_at
ORDER BY created_at DESC, uid
LIMIT $limit

// name: intervention
// One saved intervention with its spec (JSON).
MATCH (i:Intervention {uid: $uid})
RETURN i.uid AS uid, i.op AS op, i.spec AS spec, i.set AS set_uid, i.task AS task,
       i.prompt AS prompt, i.n_prompts AS n_prompts, i.metric AS metric,
       i.metric_before AS before, i.metric_after AS after, i.frozen AS frozen,
       i.predicted AS predicted, i.flagged AS flagged, i.author AS author,
       i.created_at AS created_at, i.run AS run

// name: intervention_features
// The features one intervention edited, with the value and positions.
MATCH (i:Intervention {uid: $uid})-[e:EDITS]->(f:Feature)
RETURN f.uid AS feature, f.layer AS layer, f.`index` AS feature_index, e.value AS value,
       e.positions AS positions, f.label AS label
ORDER BY layer, feature_index
LIMIT $limit

// name: feature_interventions
// Every saved intervention on feature $uid, newest first.
MATCH (i:Intervention)-[e:EDITS]->(f:Feature {uid: $uid})
RETURN i.uid AS uid, i.op AS op, e.value AS value, i.task AS task, i.prompt AS prompt,
       i.metric AS metric, i.metric_before AS before, i.metric_after AS after,
       i.predicted AS predicted, i.flagged AS flagged, i.author AS author,
       i.created_at AS created_at
ORDER BY created_at DESC, uid
LIMIT $limit

// name: circuit_interventions
// Saved interventions that edited features of circuit $uid, with how many of its features.
MATCH (c:Circuit {uid: $uid})-[:CONTAINS]->(f:Feature)
MATCH (i:Intervention)-[:EDITS]->(f)
RETURN i.uid AS uid, i.op AS op, i.task AS task, i.prompt AS prompt,
       count(f) AS n_circuit_features, i.metric_before AS before, i.metric_after AS after,
       i.predicted AS predicted, i.flagged AS flagged, i.author AS author,
       i.created_at AS created_at
ORDER BY created_at DESC, uid
LIMIT $limit

// name: ablations_moving_task
// Features whose ablation (zero or mean, alone or with others) moved task $task's metric by
// more than $min_change, largest change first; e.g. -p task=greater-than -p min_change=0.1.
MATCH (i:Intervention)-[:EDITS]->(f:Feature)
WHERE i.task = $task AND (i.op = 'zero' OR i.op = 'mean')
  AND abs(i.metric_after - i.metric_before) > $min_change
RETURN f.uid AS feature, f.label AS label, i.uid AS intervention, i.op AS op,
       i.metric_before AS before, i.metric_after AS after,
       i.metric_after - i.metric_before AS change, i.flagged AS flagged
ORDER BY abs(change) DESC, feature
LIMIT $limit

// name: set_feature_max
// Each feature's max activation over the corpus (clamps in multiples of max).
MATCH (f:Feature)
WHERE f.set = $set_uid AND f.act_max IS NOT NULL
RETURN f.layer AS layer, f.`index` AS feature_index, f.act_max AS act_max
