"""The work of each stage: plain functions over files and Arrow tables, plus thin Prefect wrappers."""
