-- Credential stuffing spread over many IPs: invalid-token denies per client network (ASN)
-- in the last 15 minutes, next to that network's total traffic.
--
-- Invalid token = token_malformed, token_invalid, token_expired, token_not_yet_valid,
-- issuer_unknown, audience_mismatch (see credential-stuffing-by-ip.sql).
--
-- ALERT: at least 200 invalid-token denies from one ASN in 15 minutes AND more than half of
-- that network's requests invalid. The ratio keeps a large ISP or a cloud provider with a
-- lot of healthy traffic from paging you; distinct_ips tells a botnet (many) from one
-- misbehaving client (few). Tune both thresholds to your traffic.
--
-- The ASN comes from Cloudflare (request.cf.asn); requests that did not pass through
-- Cloudflare (local development) have an empty ASN and are left out. distinct_ips counts
-- the stored (sampled) rows, so under heavy sampling it is a lower bound.
SELECT
  blob11 AS client_asn,
  SUM(IF(blob2 = 'token_malformed' OR blob2 = 'token_invalid' OR blob2 = 'token_expired'
      OR blob2 = 'token_not_yet_valid' OR blob2 = 'issuer_unknown' OR blob2 = 'audience_mismatch',
    _sample_interval, 0)) AS invalid_token_denies,
  SUM(_sample_interval) AS requests,
  SUM(IF(blob2 = 'token_malformed' OR blob2 = 'token_invalid' OR blob2 = 'token_expired'
      OR blob2 = 'token_not_yet_valid' OR blob2 = 'issuer_unknown' OR blob2 = 'audience_mismatch',
    _sample_interval, 0)) / SUM(_sample_interval) AS invalid_share,
  -- Only invalid-token refusals keep the IP; the empty value the other rows carry is not one.
  COUNT(DISTINCT blob12) - MAX(IF(blob12 = '', 1, 0)) AS distinct_ips
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '15' MINUTE
  AND blob11 != ''
GROUP BY client_asn
HAVING SUM(IF(blob2 = 'token_malformed' OR blob2 = 'token_invalid' OR blob2 = 'token_expired'
      OR blob2 = 'token_not_yet_valid' OR blob2 = 'issuer_unknown' OR blob2 = 'audience_mismatch',
    _sample_interval, 0)) >= 200
  AND SUM(IF(blob2 = 'token_malformed' OR blob2 = 'token_invalid' OR blob2 = 'token_expired'
      OR blob2 = 'token_not_yet_valid' OR blob2 = 'issuer_unknown' OR blob2 = 'audience_mismatch',
    _sample_interval, 0)) / SUM(_sample_interval) > 0.5
ORDER BY invalid_token_denies DESC
LIMIT 50
