"""Placement policy: pure functions over a snapshot of agents and pending jobs (no Ray, no torch)."""
