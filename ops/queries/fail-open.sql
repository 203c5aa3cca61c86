-- Fail-open accounting: requests let through because a limit could not be checked and the
-- policy says `on_error: "allow"`, per limit set and route, last 24 hours, weighted by the
-- sample interval (a rare fail-open in a busy tenant's traffic may be sampled out: the audit
-- log, `failed_open`, is the complete record). blob14 lists the limits that failed open for
-- that request, comma-separated.
--
-- ALERT: any row. A fail-open means a rate limit was not enforced; a steady stream means
-- the limiter is unhealthy (check limit_ms in the audit log and limiter_unavailable denies).
SELECT
  blob14 AS failed_open,
  blob3 AS route,
  SUM(_sample_interval) AS requests,
  MIN(timestamp) AS first_seen,
  MAX(timestamp) AS last_seen
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '24' HOUR
  AND blob14 != ''
GROUP BY failed_open, route
ORDER BY requests DESC
