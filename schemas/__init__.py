"""Contracts between stages: typed records, Arrow schemas and config dataclasses."""
