-- Who is scored at each snapshot: customers who signed up before as_of_date and had
-- not churned before it. Output: customer_id, as_of_date.
SELECT c.customer_id, s.as_of_date
FROM snapshots s
JOIN customers c
  ON c.signup_date < s.as_of_date
LEFT JOIN churn_events ch
  ON ch.customer_id = c.customer_id
WHERE ch.churn_date IS NULL OR ch.churn_date >= s.as_of_date
