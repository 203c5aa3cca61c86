-- edge.tenant.req_total{tenant_id, route, status}: requests per tenant, route and HTTP
-- status in the last hour. Filter on one tenant for a per-customer dashboard by adding
--   AND index1 = 't_42'
-- (index1 is the sampling key, so filtering on it is the cheapest query there is).
-- Requests that never got an identity (public routes, denies before authentication) and
-- requests with a token that carries no tenant claim have an empty tenant.
SELECT
  index1 AS tenant_id,
  blob3 AS route,
  double1 AS status,
  SUM(_sample_interval) AS requests
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '1' HOUR
GROUP BY tenant_id, route, status
ORDER BY requests DESC
LIMIT 500
