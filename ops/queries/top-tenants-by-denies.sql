-- Top 20 tenants by denied requests in the last 24 hours, with the share of their traffic
-- that was denied. A tenant with a high deny share is usually a broken client integration
-- (missing scopes, tenant mismatches) or a tenant being throttled (rate_limited); for the
-- reasons, run denies-by-reason.sql with `AND index1 = '<tenant>'` added.
-- Only requests with a verified identity carry a tenant; denies before authentication
-- (bad_request, route_not_found, method_not_allowed, token_*) have an empty tenant and are left out here; for
-- those, run denies-by-reason.sql with `AND index1 = ''` added.
SELECT
  index1 AS tenant_id,
  SUM(IF(blob1 = 'deny', _sample_interval, 0)) AS denies,
  SUM(_sample_interval) AS requests,
  SUM(IF(blob1 = 'deny', _sample_interval, 0)) / SUM(_sample_interval) AS deny_share
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '24' HOUR
  AND index1 != ''
GROUP BY tenant_id
HAVING SUM(IF(blob1 = 'deny', _sample_interval, 0)) > 0
ORDER BY denies DESC
LIMIT 20
