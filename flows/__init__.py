"""Prefect flows (the DAG and deployment entrypoints) and the `curate` CLI. Wiring only."""
