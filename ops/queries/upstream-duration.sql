-- edge.upstream.duration_ms: time waiting for the origin, per upstream and route, last
-- hour, next to the edge's own share of the latency (total minus upstream) so that "slow
-- because of the upstream" and "slow because of the edge" are told apart at a glance.
-- Only forwarded requests (double4 >= 0) count; -1 marks requests answered at the edge.
-- So origin_failures counts only failures after the origin was asked: a request refused
-- before that (an unreadable service binding) has no upstream time and is not here. For
-- every origin_timeout and origin_unavailable, see denies-by-reason.sql.
SELECT
  blob8 AS upstream,
  blob3 AS route,
  SUM(_sample_interval) AS forwarded,
  quantileExactWeighted(0.5)(double4, _sample_interval) AS upstream_p50_ms,
  quantileExactWeighted(0.95)(double4, _sample_interval) AS upstream_p95_ms,
  quantileExactWeighted(0.99)(double4, _sample_interval) AS upstream_p99_ms,
  quantileExactWeighted(0.95)(double2 - double4, _sample_interval) AS edge_p95_ms,
  SUM(IF(blob2 = 'origin_timeout' OR blob2 = 'origin_unavailable', _sample_interval, 0)) AS origin_failures
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '1' HOUR
  AND double4 >= 0
GROUP BY upstream, route
ORDER BY upstream_p95_ms DESC
