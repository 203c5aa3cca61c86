-- edge.authz.cache.hit_rate per issuer, in 5-minute buckets over the last 6 hours.
-- Over key lookups only: a token answered from the verified-token cache (key source
-- token_cache, or token_cache_stale while its issuer's set is stale) looked up no key, and counting it would hide lookups that all miss behind a
-- client reusing one token. A hit is a lookup whose key did not have to be fetched from the
-- issuer (memory, kv or stale); a miss is `fetch`, which also marks every check refused
-- because the issuer's key set could not be had (jwks_unavailable).
--
-- ALERT: hit_rate < 0.95 in a bucket with at least 100 key lookups (fewer lookups make the
-- rate noise: each new isolate fetches once). The HAVING clause keeps only buckets that
-- breach, so "query returns rows" is the alert condition. Remove it for a dashboard panel.
-- A sustained breach means keys are not staying cached: cache TTL too short, the issuer
-- rotating keys constantly, or tokens with unknown kids forcing refreshes.
SELECT
  toStartOfInterval(timestamp, INTERVAL '5' MINUTE) AS bucket,
  blob6 AS issuer_id,
  SUM(_sample_interval) AS key_lookups,
  SUM(IF(blob7 = 'fetch', 0, _sample_interval)) / SUM(_sample_interval) AS hit_rate
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '6' HOUR
  AND blob7 NOT IN ('', 'token_cache', 'token_cache_stale')
GROUP BY bucket, issuer_id
HAVING SUM(_sample_interval) >= 100
  AND SUM(IF(blob7 = 'fetch', 0, _sample_interval)) / SUM(_sample_interval) < 0.95
ORDER BY bucket DESC, hit_rate ASC
