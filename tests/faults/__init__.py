"""Fault-injection scenarios against the real local stack."""
