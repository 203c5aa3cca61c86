-- Rate limits that refused requests (reason rate_limited), per limit and tenant, last hour.
-- blob13 is the name of the limit that was hit, as written in the policy.
SELECT
  blob13 AS limit_name,
  index1 AS tenant_id,
  SUM(_sample_interval) AS refused
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '1' HOUR
  AND blob2 = 'rate_limited'
GROUP BY limit_name, tenant_id
ORDER BY refused DESC
LIMIT 100
