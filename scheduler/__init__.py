"""Placement: policies decide from a snapshot of agents and pending jobs, and the controller or the
simulator applies their decisions (no Ray, no torch here).

Here the shared interface: `snapshot` (what a policy sees and returns), `policy` (the protocol),
`registry` (policies by name), `feasibility` and `cost` (the catalogue at face value) and
`catalogue_lookup` (its cached reads). `wanfarm/` is the farm's policy, `baselines/` the policies it
is compared with, `sim/` the simulator. The design and its figures: docs/scheduler.md.
"""
