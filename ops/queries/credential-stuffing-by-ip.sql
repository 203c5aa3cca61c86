-- Credential stuffing / token enumeration from single IP addresses: invalid-token denies per
-- client IP in the last 15 minutes.
--
-- "Invalid token" here is every reason the edge answers with RFC 6750 `invalid_token` or
-- `invalid_request`: token_malformed, token_invalid, token_expired, token_not_yet_valid,
-- issuer_unknown, audience_mismatch. token_missing is left out (a client without a token
-- is not guessing tokens).
--
-- ALERT: at least 50 invalid-token denies from one IP in 15 minutes (tune to your traffic;
-- a client with a stale token retrying is typically well below 10). The HAVING clause
-- makes "query returns rows" the alert condition.
--
-- The client IP (blob12) is recorded on invalid-token denies only, so this query cannot show
-- an IP's allowed traffic; use credential-stuffing-by-asn.sql for ratios. Botnets spread
-- over many IPs stay under any per-IP threshold: that is what the ASN query is for.
--
-- invalid_token_denies is sampling-corrected; routes_tried, first_seen and last_seen are
-- not: they come from the stored (sampled) rows, so routes_tried is a lower bound,
-- first_seen can be later and last_seen earlier than the real ones. These refusals carry
-- no tenant, and every request without one shares the empty index: one sampling bucket.
SELECT
  blob12 AS client_ip,
  blob11 AS client_asn,
  blob10 AS client_country,
  SUM(_sample_interval) AS invalid_token_denies,
  COUNT(DISTINCT blob3) AS routes_tried,
  MIN(timestamp) AS first_seen,
  MAX(timestamp) AS last_seen
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '15' MINUTE
  AND blob1 = 'deny'
  AND blob12 != ''
  AND (blob2 = 'token_malformed' OR blob2 = 'token_invalid' OR blob2 = 'token_expired'
    OR blob2 = 'token_not_yet_valid' OR blob2 = 'issuer_unknown' OR blob2 = 'audience_mismatch')
GROUP BY client_ip, client_asn, client_country
HAVING SUM(_sample_interval) >= 50
ORDER BY invalid_token_denies DESC
LIMIT 100
