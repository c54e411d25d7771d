"""SHELL: probes fetch facts from the world and return plain values or a ProbeFailure.

No thresholds live here; judging is the checks' job.
"""
