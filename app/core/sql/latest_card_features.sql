-- The feature view's rows: per card, the features of its latest transaction.
-- BigQuery Standard SQL; `snapshot.training` is bound to one snapshot table.
SELECT * EXCEPT (recency)
FROM (
  SELECT
    t.*,
    ROW_NUMBER() OVER (PARTITION BY card_id ORDER BY event_time DESC, txn_id DESC) AS recency
  FROM snapshot.training AS t
)
WHERE recency = 1
