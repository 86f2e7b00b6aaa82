-- Who is scored at each snapshot: every machine the asset registry had delivered by
-- as_of_date (its newest version then) and installed before as_of_date. A machine that
-- failed stays in: it is repaired and runs on. Output: machine_id, as_of_date.
WITH known AS (
  SELECT s.as_of_date,
         m.machine_id,
         m.installed_on,
         ROW_NUMBER() OVER (PARTITION BY m.machine_id, s.as_of_date ORDER BY m._batch_date DESC, m._source_file DESC) AS version_rank
  FROM snapshots s
  JOIN machines_history m
    ON m._batch_date <= s.as_of_date
)
SELECT machine_id, as_of_date
FROM known
WHERE version_rank = 1
  AND installed_on < as_of_date
