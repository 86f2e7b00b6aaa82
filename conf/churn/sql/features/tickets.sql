-- Support tickets in the 30/90 days strictly before as_of_date.
SELECT p.customer_id,
       p.as_of_date,
       count(CASE WHEN t.opened_at >= CAST(date_sub(p.as_of_date, 30) AS TIMESTAMP) THEN 1 END) AS tickets_30d,
       count(t.ticket_id) AS tickets_90d,
       count(CASE WHEN t.category = 'cancellation' THEN 1 END) AS cancellation_tickets_90d,
       -- 91 = no ticket in the whole 90-day window
       coalesce(datediff(p.as_of_date, to_date(max(t.opened_at))), 91) AS days_since_last_ticket
FROM population p
LEFT JOIN support_tickets t
  ON t.customer_id = p.customer_id
 AND t.opened_at < CAST(p.as_of_date AS TIMESTAMP)
 AND t.opened_at >= CAST(date_sub(p.as_of_date, 90) AS TIMESTAMP)
GROUP BY p.customer_id, p.as_of_date
