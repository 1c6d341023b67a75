"""Feature services of the churn demo. The version in the name is the contract with a
model: a model trained on `churn_v1` is served from `churn_v1`. Changing the features
(adding, removing, retyping) means a new service, `churn_v2`, next to the old one."""

from feast import FeatureService
from views import churn_features

churn_v1 = FeatureService(
    name="churn_v1",
    features=[churn_features],
    description="Features of churn; the version in the name is the model contract",
)
