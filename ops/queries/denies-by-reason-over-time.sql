-- edge.authz.deny_total{reason} as a time series (5-minute buckets, last 24 hours), for a
-- dashboard panel. A jump in one reason after a policy deploy shows up as a step here;
-- blob16 (matched_rule, "policy:<route>@v<version>") tells which policy version was live.
SELECT
  toStartOfInterval(timestamp, INTERVAL '5' MINUTE) AS bucket,
  blob2 AS reason,
  SUM(_sample_interval) AS denies
FROM portcullis
WHERE timestamp > NOW() - INTERVAL '24' HOUR
  AND blob1 = 'deny'
GROUP BY bucket, reason
ORDER BY bucket ASC, denies DESC
