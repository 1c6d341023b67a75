"""Entities of the churn demo: a customer, keyed by its id (a string such as "C100042")."""

from feast import Entity, ValueType

# Named after its join key: kubeloop names entities after the spec's `data.entity` column.
customer = Entity(
    name="customer_id",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="churn: one row of features per customer_id and timestamp",
)
