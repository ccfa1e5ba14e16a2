"""Helpers of the integration tests (launcher scripts run as real server processes)."""
