"""The base every other layer stands on: config, errors, the Spark session, Delta tables
(every read and write), MLflow tracking (every call)."""
