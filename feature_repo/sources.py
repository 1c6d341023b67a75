"""Offline source of the churn demo: the cleaned monthly customer snapshots.

The kubeloop features stage writes this parquet (entity, timestamp and features, no label)
to `<workdir>/feature_store/data/churn_source.parquet`; copy it to `data/` for a local
`feast apply`, or point CHURN_SOURCE_PATH at it (an s3:// or gs:// URI on a cluster; the
image then needs s3fs / gcsfs). A relative path resolves against this folder.
"""

import os

from feast import FileSource

churn_source = FileSource(
    name="churn_source",
    path=os.environ.get("CHURN_SOURCE_PATH", "data/churn_source.parquet"),
    timestamp_field="event_timestamp",
)
