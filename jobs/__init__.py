"""Batch jobs: backfill, export, synthetic journeys, dead-letter replay."""
