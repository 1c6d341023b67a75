"""Feature views of the churn demo. Feature names are the source column names, and the
types are what kubeloop's cleaning stage produces (numbers as float64, categories as text);
tests/feature_repo checks that kubeloop builds exactly this view from the demo data."""

from datetime import timedelta

from entities import customer
from feast import FeatureView, Field
from feast.types import Float64, String
from sources import churn_source

churn_features = FeatureView(
    name="churn_features",
    entities=[customer],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="tenure_months", dtype=Float64),
        Field(name="plan", dtype=String),
        Field(name="contract", dtype=String),
        Field(name="monthly_charges", dtype=Float64),
        Field(name="total_charges", dtype=Float64),
        Field(name="data_usage_gb", dtype=Float64),
        Field(name="support_tickets", dtype=Float64),
        Field(name="region", dtype=String),
        Field(name="payment_method", dtype=String),
    ],
    online=True,
    source=churn_source,
    tags={"managed_by": "kubeloop"},
)
