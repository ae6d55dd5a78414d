"""Batch evaluation: runners per task, pure metric arithmetic, reports."""
