"""Baseline policies, each deciding as a published scheduler does, for the simulator to compare:
greedy (the farm's first policy), fifo, affinity, horde and locality.

They judge feasibility with the catalogue estimate at face value (no learned margin, no learning):
that is how the systems they stand for would behave.
"""
