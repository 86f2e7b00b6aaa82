-- Static attributes and tenure at as_of_date.
SELECT p.customer_id,
       p.as_of_date,
       c.plan,
       c.region,
       c.payment_method,
       c.channel,
       c.age,
       c.monthly_fee,
       datediff(p.as_of_date, c.signup_date) AS tenure_days
FROM population p
JOIN customers c ON c.customer_id = p.customer_id
