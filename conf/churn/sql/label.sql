-- 1 when the customer churns within ${horizon_days} days from as_of_date, 0 when not,
-- NULL while that window is not fully observed (it ends after ${observed_until}).
-- Only events on or after as_of_date are used.
SELECT p.customer_id,
       p.as_of_date,
       CASE
         WHEN date_add(p.as_of_date, ${horizon_days}) > ${observed_until} THEN NULL
         WHEN ch.churn_date IS NOT NULL THEN 1
         ELSE 0
       END AS ${label_column}
FROM population p
LEFT JOIN churn_events ch
  ON ch.customer_id = p.customer_id
 AND ch.churn_date >= p.as_of_date
 AND ch.churn_date < date_add(p.as_of_date, ${horizon_days})
