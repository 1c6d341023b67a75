"""Monitoring: the Prometheus rules (one file, ``rules.yaml``), the metrics they need beyond
the services' own, and the Prometheus + Alertmanager configs of the local setup."""
