-- Customer attributes as they were known at as_of_date (the newest version that had
-- arrived by then: a plan change sent later does not leak backwards), and tenure.
WITH known AS (
  SELECT p.customer_id,
         p.as_of_date,
         c.plan,
         c.region,
         c.payment_method,
         c.channel,
         c.age,
         c.monthly_fee,
         c.signup_date,
         ROW_NUMBER() OVER (PARTITION BY p.customer_id, p.as_of_date ORDER BY c._batch_date DESC) AS version_rank
  FROM population p
  JOIN customers_history c
    ON c.customer_id = p.customer_id
   AND c._batch_date <= p.as_of_date
)
SELECT customer_id,
       as_of_date,
       plan,
       region,
       payment_method,
       channel,
       age,
       monthly_fee,
       datediff(as_of_date, signup_date) AS tenure_days
FROM known
WHERE version_rank = 1
