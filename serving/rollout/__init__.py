"""Canary rollouts: steps, Prometheus analysis, decisions, persisted state."""
