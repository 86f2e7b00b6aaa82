-- Machine attributes as the registry knew them at as_of_date (the newest version that had
-- arrived by then: a move to another site sent later does not leak backwards), and age.
WITH known AS (
  SELECT p.machine_id,
         p.as_of_date,
         m.model,
         m.site,
         m.rated_power_kw,
         m.installed_on,
         ROW_NUMBER() OVER (PARTITION BY p.machine_id, p.as_of_date ORDER BY m._batch_date DESC, m._source_file DESC) AS version_rank
  FROM population p
  JOIN machines_history m
    ON m.machine_id = p.machine_id
   AND m._batch_date <= p.as_of_date
)
SELECT machine_id,
       as_of_date,
       model,
       site,
       rated_power_kw,
       datediff(as_of_date, installed_on) AS age_days
FROM known
WHERE version_rank = 1
