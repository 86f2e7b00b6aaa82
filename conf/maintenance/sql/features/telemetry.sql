-- Telemetry of the 30 days strictly before as_of_date that had ARRIVED by as_of_date
-- (_batch_date <= as_of_date): readings come in drops every few days, so at an as-of date
-- the newest reading is one to a few days old. The short windows (3 and 14 days) end at the
-- newest arrived reading, not at as_of_date, so they hold the same span of data whatever
-- the delivery lag; days_since_last_reading says how old that reading is (mostly the
-- delivery lag, which the whole fleet shares at an as-of date), days_silent how long the
-- machine has been silent while the fleet reported (down, or a sensor out). The 30-day
-- window is the machine's own baseline.
-- Sums of measurements are DECIMAL (exact, so independent of the order Spark adds rows in:
-- the same features whatever the partitioning, and an incremental run equals a full one).
WITH daily AS (
  SELECT machine_id,
         to_date(read_at) AS day,
         _batch_date,
         count(*) AS readings,
         sum(CAST(temperature_c AS DECIMAL(18, 6))) AS temp_sum,
         count(temperature_c) AS temp_n,
         sum(CAST(vibration_mm_s AS DECIMAL(18, 6))) AS vib_sum,
         count(vibration_mm_s) AS vib_n,
         max(vibration_mm_s) AS vib_max,
         sum(CAST(pressure_bar AS DECIMAL(18, 6))) AS press_sum,
         sum(CAST(pressure_bar AS DECIMAL(18, 6)) * CAST(pressure_bar AS DECIMAL(18, 6))) AS press_sq,
         count(pressure_bar) AS press_n,
         sum(rpm) AS rpm_sum,
         count(rpm) AS rpm_n
  FROM sensor_readings
  GROUP BY machine_id, to_date(read_at), _batch_date
),
arrived AS (
  SELECT p.machine_id,
         p.as_of_date,
         d.day,
         d.readings, d.temp_sum, d.temp_n, d.vib_sum, d.vib_n, d.vib_max,
         d.press_sum, d.press_sq, d.press_n, d.rpm_sum, d.rpm_n,
         max(d.day) OVER (PARTITION BY p.machine_id, p.as_of_date) AS last_day
  FROM population p
  JOIN daily d
    ON d.machine_id = p.machine_id
   AND d.day < p.as_of_date
   AND d.day >= date_sub(p.as_of_date, 30)
   AND d._batch_date <= p.as_of_date
),
windowed AS (
  SELECT machine_id,
         as_of_date,
         max(last_day) AS last_day,
         sum(CASE WHEN day > date_sub(last_day, 3) THEN readings ELSE 0 END) AS readings_3d,
         sum(CASE WHEN day > date_sub(last_day, 14) THEN readings ELSE 0 END) AS readings_14d,
         CAST(try_divide(sum(CASE WHEN day > date_sub(last_day, 3) THEN temp_sum END), sum(CASE WHEN day > date_sub(last_day, 3) THEN temp_n END)) AS DOUBLE) AS temperature_mean_3d,
         CAST(try_divide(sum(CASE WHEN day > date_sub(last_day, 14) THEN temp_sum END), sum(CASE WHEN day > date_sub(last_day, 14) THEN temp_n END)) AS DOUBLE) AS temperature_mean_14d,
         CAST(try_divide(sum(temp_sum), sum(temp_n)) AS DOUBLE) AS temperature_mean_30d,
         CAST(try_divide(sum(CASE WHEN day > date_sub(last_day, 3) THEN vib_sum END), sum(CASE WHEN day > date_sub(last_day, 3) THEN vib_n END)) AS DOUBLE) AS vibration_mean_3d,
         max(CASE WHEN day > date_sub(last_day, 3) THEN vib_max END) AS vibration_max_3d,
         CAST(try_divide(sum(CASE WHEN day > date_sub(last_day, 14) THEN vib_sum END), sum(CASE WHEN day > date_sub(last_day, 14) THEN vib_n END)) AS DOUBLE) AS vibration_mean_14d,
         CAST(try_divide(sum(vib_sum), sum(vib_n)) AS DOUBLE) AS vibration_mean_30d,
         -- mm/s per day: least-squares slope of the daily mean over the 14-day window
         -- (rounded: a regression's double arithmetic depends on the order of the rows in its last bits)
         round(regr_slope(CAST(CASE WHEN day > date_sub(last_day, 14) THEN vib_sum / vib_n END AS DOUBLE),
                          CASE WHEN day > date_sub(last_day, 14) THEN datediff(day, last_day) END), 9) AS vibration_slope_14d,
         CAST(sum(CASE WHEN day > date_sub(last_day, 3) THEN press_sum END) AS DOUBLE) AS press_sum_3d,
         CAST(sum(CASE WHEN day > date_sub(last_day, 3) THEN press_sq END) AS DOUBLE) AS press_sq_3d,
         sum(CASE WHEN day > date_sub(last_day, 3) THEN press_n END) AS press_n_3d,
         CAST(sum(press_sum) AS DOUBLE) AS press_sum_30d,
         CAST(sum(press_sq) AS DOUBLE) AS press_sq_30d,
         sum(press_n) AS press_n_30d,
         CAST(try_divide(sum(CASE WHEN day > date_sub(last_day, 3) THEN rpm_sum END), sum(CASE WHEN day > date_sub(last_day, 3) THEN rpm_n END)) AS DOUBLE) AS rpm_mean_3d,
         CAST(try_divide(sum(rpm_sum), sum(rpm_n)) AS DOUBLE) AS rpm_mean_30d
  FROM arrived
  GROUP BY machine_id, as_of_date
)
SELECT p.machine_id,
       p.as_of_date,
       coalesce(w.readings_3d, 0) AS readings_3d,
       coalesce(w.readings_14d, 0) AS readings_14d,
       -- 31 = no reading in the whole 30-day window
       coalesce(datediff(p.as_of_date, w.last_day), 31) AS days_since_last_reading,
       -- 30 = silent over the whole 30-day window
       coalesce(datediff(max(w.last_day) OVER (PARTITION BY p.as_of_date), w.last_day), 30) AS days_silent,
       w.temperature_mean_3d,
       w.temperature_mean_14d,
       w.temperature_mean_3d - w.temperature_mean_30d AS temperature_delta_3d_vs_30d,
       w.vibration_mean_3d,
       w.vibration_max_3d,
       w.vibration_mean_14d,
       try_divide(w.vibration_mean_3d, w.vibration_mean_30d) AS vibration_ratio_3d_vs_30d,
       w.vibration_slope_14d,
       -- population standard deviation from the sums (NULL with fewer than 2 readings)
       CASE WHEN w.press_n_3d > 1
            THEN sqrt(greatest(w.press_sq_3d / w.press_n_3d - power(w.press_sum_3d / w.press_n_3d, 2), 0D)) END AS pressure_std_3d,
       CASE WHEN w.press_n_30d > 1
            THEN sqrt(greatest(w.press_sq_30d / w.press_n_30d - power(w.press_sum_30d / w.press_n_30d, 2), 0D)) END AS pressure_std_30d,
       try_divide(w.rpm_mean_3d, w.rpm_mean_30d) AS rpm_ratio_3d_vs_30d
FROM population p
LEFT JOIN windowed w
  ON w.machine_id = p.machine_id
 AND w.as_of_date = p.as_of_date
