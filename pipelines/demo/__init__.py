"""`kubeloop demo`: the whole loop on one machine — train, serve, drift, retrain, roll out."""
