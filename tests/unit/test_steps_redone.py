"""The steps an attempt ran again are those its job's earlier attempts ran past the checkpoint it
resumed from; the steps it spared are the checkpoint's, whatever the controller remembers."""

from __future__ import annotations

from controller.steps_redone import Redone, StepsReached


def test_an_attempt_resumed_from_a_checkpoint_redoes_only_the_steps_after_it() -> None:
    reached = StepsReached()
    for step in range(1, 14):
        reached.progress("job", step)
    reached.lost("job")  # killed at step 13
    reached.progress("job", 40)  # the next attempt's own progress does not count as redone
    assert reached.ended("job", resumed_from=10, going_on=False) == Redone(redone=3, resumed=10)
    assert reached.ended("job", resumed_from=0, going_on=False) == Redone(redone=0, resumed=0)


def test_a_preempted_attempt_counts_for_the_next_and_a_restarted_controller_still_counts_spared_steps() -> (
    None
):
    reached = StepsReached()
    reached.progress("job", 7)
    assert reached.ended("job", resumed_from=0, going_on=True) == Redone(0, 0)  # preempted at 7
    assert reached.ended("job", resumed_from=5, going_on=False) == Redone(redone=2, resumed=5)
    fresh = StepsReached()  # knows nothing of earlier attempts
    assert fresh.ended("job", resumed_from=5, going_on=False) == Redone(redone=0, resumed=5)
