-- Privilege probing: users hitting insufficient_scope on routes they have never been
-- allowed on, in the last hour, measured against 30 days of history.
--
-- For every (tenant, issuer, user, route) seen in 30 days, the inner query counts the user's
-- insufficient_scope denies in the last hour and the user's allowed requests on that route
-- over the whole 30 days (a user is a subject at one issuer: two issuers' "1001" are two
-- users). A pair with recent scope denies and no allowed request ever is a
-- route "the user never used before". The outer query sums those pairs per user.
--
-- ALERT: one user with insufficient_scope on 3 or more routes they never used, within an
-- hour (a probing client walks the API; a misconfigured client fails on one route).
--
-- Limits of doing this in Analytics Engine SQL, honestly:
-- - "Never" means "not within the lookback window" (30 days here; data is kept 3 months).
--   A user who last used a route 31 days ago counts as new.
-- - Sampling cuts both ways. Analytics Engine samples when it stores rows (per index, so
--   within each tenant) and again when it answers a query, more coarsely over a range as
--   long as 30 days. A user with very few allowed requests on a route inside a busy tenant
--   can have them all sampled out, and then looks like a first-timer (a false positive);
--   and a user's few recent insufficient_scope denies can be sampled out just the same,
--   so a probing user can be missed (a false negative). Shortening the window makes the
--   read-time sampling finer.
-- - The route is the policy route name (blob3), not the raw path: probing inside one route
--   (e.g. /v1/admin/** with different ids) counts once.
-- - There is no per-user state and no join against an entitlement system: this flags
--   unusual behaviour; whether the user should have the scope is a question for the
--   identity provider. Scanning 30 days is the most expensive query here; run it every
--   15 minutes at most, or shorten the window.
SELECT
  tenant_id,
  issuer_id,
  user_sub,
  COUNT() AS new_routes_denied,
  SUM(scope_denies) AS scope_denies
FROM (
  SELECT
    index1 AS tenant_id,
    blob6 AS issuer_id,
    blob5 AS user_sub,
    blob3 AS route,
    SUM(IF(blob2 = 'insufficient_scope' AND timestamp > NOW() - INTERVAL '1' HOUR, _sample_interval, 0))
      AS scope_denies,
    SUM(IF(blob1 = 'allow', _sample_interval, 0)) AS allowed_ever
  FROM portcullis
  WHERE timestamp > NOW() - INTERVAL '30' DAY
    AND blob5 != ''
    AND blob3 != ''
  GROUP BY tenant_id, issuer_id, user_sub, route
)
WHERE scope_denies > 0
  AND allowed_ever = 0
GROUP BY tenant_id, issuer_id, user_sub
HAVING COUNT() >= 3
ORDER BY new_routes_denied DESC, scope_denies DESC
LIMIT 100
