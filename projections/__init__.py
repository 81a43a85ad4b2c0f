"""Read models and live fan-out fed from the event log (the log stays the truth)."""
