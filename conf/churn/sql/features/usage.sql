-- Usage over the 7/30/90 days strictly before as_of_date, and its trend.
-- Minutes are summed as DECIMAL: an exact sum does not depend on the order Spark adds the
-- rows in, so a snapshot has the same features whatever the partitioning (an incremental
-- run equals a full recompute bit for bit; a double sum differs in the last bit, enough to
-- send a row the other way at a tree split).
WITH daily AS (
  SELECT customer_id,
         to_date(event_ts) AS day,
         sum(CAST(minutes_used AS DECIMAL(18, 6))) AS minutes,
         sum(sessions) AS sessions
  FROM usage_events
  GROUP BY customer_id, to_date(event_ts)
),
windowed AS (
  SELECT p.customer_id,
         p.as_of_date,
         count(CASE WHEN d.day >= date_sub(p.as_of_date, 7) THEN 1 END) AS active_days_7d,
         count(CASE WHEN d.day >= date_sub(p.as_of_date, 30) THEN 1 END) AS active_days_30d,
         count(d.day) AS active_days_90d,
         CAST(coalesce(sum(CASE WHEN d.day >= date_sub(p.as_of_date, 7) THEN d.minutes END), 0) AS DOUBLE) AS minutes_7d,
         CAST(coalesce(sum(CASE WHEN d.day >= date_sub(p.as_of_date, 30) THEN d.minutes END), 0) AS DOUBLE) AS minutes_30d,
         CAST(coalesce(sum(d.minutes), 0) AS DOUBLE) AS minutes_90d,
         coalesce(sum(CASE WHEN d.day >= date_sub(p.as_of_date, 30) THEN d.sessions END), 0) AS sessions_30d,
         -- 91 = no activity in the whole 90-day window
         coalesce(datediff(p.as_of_date, max(d.day)), 91) AS days_since_last_activity
  FROM population p
  LEFT JOIN daily d
    ON d.customer_id = p.customer_id
   AND d.day < p.as_of_date
   AND d.day >= date_sub(p.as_of_date, 90)
  GROUP BY p.customer_id, p.as_of_date
)
SELECT *,
       -- daily rate in the short window over the daily rate in the long one (NULL: no usage)
       try_divide(minutes_7d / 7, minutes_30d / 30) AS usage_trend_7d_vs_30d,
       try_divide(minutes_30d / 30, minutes_90d / 90) AS usage_trend_30d_vs_90d
FROM windowed
