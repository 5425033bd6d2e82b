"""Prefect flows, one module per deployment in prefect.yaml; their steps are in flows/steps.py."""
