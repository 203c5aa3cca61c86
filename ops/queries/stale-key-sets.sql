-- Token checks answered from a key set past its cache TTL, per issuer, in 5-minute buckets
-- over the last 6 hours. A stale set is still served (up to max_stale_s) while refreshes fail,
-- so an issuer outage does not show in the hit rate or in denies until the set expires and
-- every request is refused 503 jwks_unavailable. blob7 = 'stale' is the early warning; a token
-- answered from the verified-token cache while its issuer's set is past its TTL is
-- 'token_cache_stale', counted here too, so a client reusing one token still shows.
--
-- ALERT: rows returned. A healthy issuer is stale for the few requests that meet the set just
-- after its TTL, before the background refresh lands; 20 or more in a bucket means refreshes
-- are failing (see jwks_* details in the audit log of refused requests, detail key_set_stale
-- on the requests let through meanwhile, and the issuer's JWKS endpoint). Lower the threshold
-- for low-traffic issuers.
SELECT
  toStartOfInterval(timestamp, INTERVAL '5' MINUTE) AS bucket,
  blob6 AS issuer_id,
  SUM(_sample_interval) AS stale_checks,
  MIN(timestamp) AS first_seen,
  MAX(timestamp) AS last_seen
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '6' HOUR
  AND blob7 IN ('stale', 'token_cache_stale')
GROUP BY bucket, issuer_id
HAVING SUM(_sample_interval) >= 20
ORDER BY bucket DESC, stale_checks DESC
