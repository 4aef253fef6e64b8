"""A discrete-event simulator of a render farm: pools and traces in, policies compared out.

`formats` reads pool and trace files, `traces` loads a trace of either form, `generator` makes
synthetic traces, `truth` is the ground truth of render time and each job's luck, `memory_truth`
that of memory (docs/simulator-truth.md), `engine.simulate` drives a policy's `place()`, `metrics`
and `report` turn a run into figures, a table, JSON and a chart, `targets` judges a figure against
its limit (no data is a miss), `bounds` gives the latency floor no policy beats.
"""
