-- edge.token.validate.duration_ms{issuer}: token verification time per issuer (policy id)
-- and key source, last hour. `token_cache` is a verified-token cache hit (`token_cache_stale`
-- while its issuer's set is served past its TTL), `memory` and `kv` are key cache hits
-- (`stale`: from a set past its TTL), `fetch`: a key-cache miss (a fetch for this request,
-- or a refusal because the key set cannot be had: every jwks_unavailable refusal is
-- labelled `fetch`, even one inside the refresh cooldown that fetched nothing). Fetches are
-- the slow path, expected after a deploy, a key rotation or an unknown kid.
-- Rows without a token check (public routes, denies before verification) have an empty
-- issuer and double3 = -1, and are left out.
SELECT
  blob6 AS issuer_id,
  blob7 AS key_source,
  SUM(_sample_interval) AS verifications,
  SUM(_sample_interval * double3) / SUM(_sample_interval) AS avg_ms,
  quantileExactWeighted(0.5)(double3, _sample_interval) AS p50_ms,
  quantileExactWeighted(0.95)(double3, _sample_interval) AS p95_ms,
  quantileExactWeighted(0.99)(double3, _sample_interval) AS p99_ms
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '1' HOUR
  AND blob6 != ''
  AND double3 >= 0
GROUP BY issuer_id, key_source
ORDER BY issuer_id ASC, verifications DESC
