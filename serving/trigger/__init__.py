"""The retrain trigger: Alertmanager webhooks in, at most one retraining run per alert
episode out (dedupe, cooldown, daily budget, persisted state), then the gate's verdict
decides between a canary rollout and keeping the current model."""
