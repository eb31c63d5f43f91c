SELECT
  JSON_VALUE(attributes, '$."ce-id"') AS ce_id,
  JSON_VALUE(attributes, '$."ce-cdfproject"') AS project,
  SAFE_CAST(JSON_VALUE(attributes, '$."ce-pipelineid"') AS INT64) AS pipeline_id,
  SAFE_CAST(JSON_VALUE(attributes, '$."ce-runid"') AS INT64) AS run_id,
  SAFE.PARSE_TIMESTAMP('%Y-%m-%dT%H:%M:%E*SZ', JSON_VALUE(attributes, '$."ce-time"')) AS run_status_time,
  SAFE_CAST(JSON_VALUE(data, '$.matchIndex') AS INT64) AS match_index,
  JSON_VALUE(data, '$.matchType') AS match_type,
  SAFE_CAST(JSON_VALUE(data, '$.score') AS FLOAT64) AS score,
  SAFE_CAST(JSON_VALUE(data, '$.sourceId') AS INT64) AS source_id,
  JSON_VALUE(data, '$.sourceExternalId') AS source_external_id,
  SAFE_CAST(JSON_VALUE(data, '$.targetId') AS INT64) AS target_id,
  JSON_VALUE(data, '$.targetExternalId') AS target_external_id,
  publish_time
FROM `${events_table}`
WHERE JSON_VALUE(attributes, '$."ce-type"') = 'com.cognite.entitymatching.match'
QUALIFY ROW_NUMBER() OVER (PARTITION BY JSON_VALUE(attributes, '$."ce-id"') ORDER BY publish_time, message_id) = 1
