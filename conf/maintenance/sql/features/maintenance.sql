-- Work orders performed strictly before as_of_date that had arrived by then (the CMMS
-- export is weekly): how long since the machine was last looked at or fixed, and how much
-- it was repaired and down in the last 90 days.
SELECT p.machine_id,
       p.as_of_date,
       -- 366 = none in the whole year before as_of_date
       coalesce(datediff(p.as_of_date, max(w.performed_on)), 366) AS days_since_maintenance,
       coalesce(datediff(p.as_of_date, max(CASE WHEN w.kind IN ('repair', 'part_replacement') THEN w.performed_on END)), 366) AS days_since_repair,
       count(CASE WHEN w.kind = 'repair' AND w.performed_on >= date_sub(p.as_of_date, 90) THEN 1 END) AS repairs_90d,
       count(CASE WHEN w.kind = 'part_replacement' AND w.performed_on >= date_sub(p.as_of_date, 90) THEN 1 END) AS part_replacements_90d,
       count(CASE WHEN w.kind = 'inspection' AND w.performed_on >= date_sub(p.as_of_date, 90) THEN 1 END) AS inspections_90d,
       -- an exact (DECIMAL) sum: the same whatever the order of the rows
       CAST(coalesce(sum(CASE WHEN w.performed_on >= date_sub(p.as_of_date, 90) THEN CAST(w.downtime_hours AS DECIMAL(18, 6)) END), 0) AS DOUBLE) AS downtime_hours_90d
FROM population p
LEFT JOIN maintenance_logs w
  ON w.machine_id = p.machine_id
 AND w.performed_on < p.as_of_date
 AND w.performed_on >= date_sub(p.as_of_date, 365)
 AND w._batch_date <= p.as_of_date
GROUP BY p.machine_id, p.as_of_date
