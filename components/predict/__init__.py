"""Batch scoring: a registered model over a CSV or Parquet file, streamed in chunks."""
