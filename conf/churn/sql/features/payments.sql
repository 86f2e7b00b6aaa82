-- Payments and payment failures in the 30/90 days strictly before as_of_date.
SELECT p.customer_id,
       p.as_of_date,
       count(pay.payment_id) AS payments_90d,
       count(CASE WHEN pay.status = 'failed' AND pay.payment_date >= date_sub(p.as_of_date, 30) THEN 1 END) AS failed_payments_30d,
       count(CASE WHEN pay.status = 'failed' THEN 1 END) AS failed_payments_90d,
       try_divide(count(CASE WHEN pay.status = 'failed' THEN 1 END), count(pay.payment_id)) AS failed_payment_rate_90d
FROM population p
LEFT JOIN payments pay
  ON pay.customer_id = p.customer_id
 AND pay.payment_date < p.as_of_date
 AND pay.payment_date >= date_sub(p.as_of_date, 90)
GROUP BY p.customer_id, p.as_of_date
