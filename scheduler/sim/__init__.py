"""A discrete-event simulator of a render farm: pools and traces in, policies compared out.

`formats` reads pool and trace files, `generator` makes synthetic traces, `truth` is the ground
truth of render time and memory, `engine.simulate` drives a policy's `place()`, `metrics` and
`report` turn a run into figures, a table, JSON and a chart.
"""
