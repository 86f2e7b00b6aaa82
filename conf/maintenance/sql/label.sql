-- 1 when the machine fails (once or more) within ${horizon_days} days from as_of_date, 0 when
-- not, NULL while that window is not fully observed (it ends after ${observed_until}).
-- Only failures on or after as_of_date are used (whenever they arrived: this is the truth
-- the model is judged on, not what it could see).
SELECT p.machine_id,
       p.as_of_date,
       CASE
         WHEN date_add(p.as_of_date, ${horizon_days}) > ${observed_until} THEN NULL
         WHEN count(f.failed_at) > 0 THEN 1
         ELSE 0
       END AS ${label_column}
FROM population p
LEFT JOIN failures f
  ON f.machine_id = p.machine_id
 AND f.failed_at >= CAST(p.as_of_date AS TIMESTAMP)
 AND f.failed_at < CAST(date_add(p.as_of_date, ${horizon_days}) AS TIMESTAMP)
GROUP BY p.machine_id, p.as_of_date
