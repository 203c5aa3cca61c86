-- edge.authz.deny_total{reason}: denied requests in the last hour, by deny reason.
-- Counts are sampling-correct: each stored row stands for _sample_interval requests.
SELECT
  blob2 AS reason,
  SUM(_sample_interval) AS denies
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '1' HOUR
  AND blob1 = 'deny'
GROUP BY reason
ORDER BY denies DESC
