"""Governance across runners: budgets, burst planning, the reaper and the live-runner index."""
