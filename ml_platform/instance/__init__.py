"""Dagster instance configurations of the profiles (package data: `local.yaml`, `k8s.yaml`)."""
