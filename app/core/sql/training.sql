-- Training table: every raw transaction with point-in-time per-card features.
-- BigQuery Standard SQL; DuckDB runs it through sqlglot (app/core/sql/__init__.py).
-- Windows end at the current row, so a row only sees its card's past (and itself):
-- the same definitions serve training and the online feature view.
WITH base AS (
  SELECT
    CONCAT(ingest_id, ':', LPAD(CAST(source_line AS STRING), 9, '0')) AS txn_id,
    card_id,
    card_masked,
    event_time,
    V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14,
    V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
    amount,
    label
  FROM raw.transactions
),
keyed AS (
  -- A strict per-card order: microseconds plus the row's rank among same-second rows.
  -- RANGE frames over event_time alone would let a row see later rows of the same
  -- second (its peers); over this key a row sees only rows ordered before it.
  -- (Assumes fewer than a million transactions per card per second.)
  SELECT
    base.*,
    CAST(ROUND(event_time * 1000000) AS INT64)
      + ROW_NUMBER() OVER (PARTITION BY card_id, event_time ORDER BY txn_id) - 1 AS order_key
  FROM base
),
windowed AS (
  SELECT
    keyed.*,
    COUNT(*) OVER last_hour AS card_txn_count_1h,
    COUNT(*) OVER last_day AS card_txn_count_24h,
    SUM(amount) OVER last_day AS card_amount_sum_24h,
    AVG(amount) OVER last_day AS card_amount_avg_24h,
    MAX(amount) OVER last_day AS card_amount_max_24h,
    STDDEV_POP(amount) OVER last_day AS card_amount_sd_24h,
    event_time - LAG(event_time) OVER card_order AS secs_since_prev_txn
  FROM keyed
  WINDOW
    card_order AS (PARTITION BY card_id ORDER BY order_key),
    last_hour AS (
      PARTITION BY card_id ORDER BY order_key
      RANGE BETWEEN 3600000000 PRECEDING AND CURRENT ROW
    ),
    last_day AS (
      PARTITION BY card_id ORDER BY order_key
      RANGE BETWEEN 86400000000 PRECEDING AND CURRENT ROW
    )
)
SELECT
  txn_id,
  card_id,
  card_masked,
  event_time,
  V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14,
  V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
  amount,
  card_txn_count_1h,
  card_txn_count_24h,
  card_amount_sum_24h,
  card_amount_avg_24h,
  card_amount_max_24h,
  COALESCE(SAFE_DIVIDE(amount - card_amount_avg_24h, card_amount_sd_24h), 0.0) AS card_amount_zscore_24h,
  secs_since_prev_txn,
  label
FROM windowed
