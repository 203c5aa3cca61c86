-- Top 20 tenants by requests in the last 24 hours, with their denies and p95 latency.
SELECT
  index1 AS tenant_id,
  SUM(_sample_interval) AS requests,
  SUM(IF(blob1 = 'deny', _sample_interval, 0)) AS denies,
  quantileExactWeighted(0.95)(double2, _sample_interval) AS p95_latency_ms
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '24' HOUR
  AND index1 != ''
GROUP BY tenant_id
ORDER BY requests DESC
LIMIT 20
