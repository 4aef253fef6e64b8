"""Baseline policies, each deciding as a published scheduler does, for the simulator to compare.

They judge feasibility with the catalogue estimate at face value (no learned margin, no learning):
that is how the systems they stand for would behave.
"""

from scheduler.baselines import affinity, fifo, horde, locality

__all__ = ["affinity", "fifo", "horde", "locality"]
