-- Who is scored at each snapshot: customers known at as_of_date (their newest record that
-- had arrived by then: a correction sent later does not move the population backwards)
-- who signed up before as_of_date and had not churned before it.
-- Output: customer_id, as_of_date.
WITH known AS (
  SELECT c.customer_id,
         s.as_of_date,
         c.signup_date,
         ROW_NUMBER() OVER (PARTITION BY c.customer_id, s.as_of_date ORDER BY c._batch_date DESC, c._source_file DESC) AS version_rank
  FROM snapshots s
  JOIN customers_history c
    ON c._batch_date <= s.as_of_date
)
SELECT k.customer_id, k.as_of_date
FROM known k
LEFT JOIN churn_events ch
  ON ch.customer_id = k.customer_id
WHERE k.version_rank = 1
  AND k.signup_date < k.as_of_date
  AND (ch.churn_date IS NULL OR ch.churn_date >= k.as_of_date)
