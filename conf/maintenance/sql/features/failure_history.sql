-- Earlier failures: strictly before as_of_date and reported by then (a failure of the day
-- before as_of_date has usually not arrived yet).
SELECT p.machine_id,
       p.as_of_date,
       count(CASE WHEN f.failed_at >= CAST(date_sub(p.as_of_date, 30) AS TIMESTAMP) THEN 1 END) AS failures_30d,
       count(f.failed_at) AS failures_180d,
       -- 181 = no failure in the whole 180-day window
       coalesce(datediff(p.as_of_date, to_date(max(f.failed_at))), 181) AS days_since_failure
FROM population p
LEFT JOIN failures f
  ON f.machine_id = p.machine_id
 AND f.failed_at < CAST(p.as_of_date AS TIMESTAMP)
 AND f.failed_at >= CAST(date_sub(p.as_of_date, 180) AS TIMESTAMP)
 AND f._batch_date <= p.as_of_date
GROUP BY p.machine_id, p.as_of_date
