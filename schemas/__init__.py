"""Contracts between stages: Arrow schemas, the config model and the run report.

This package imports nothing else of ours; tasks and flows import it.
"""
