"""The task state machine: transition table, absorbing terminal states, visibility."""

from __future__ import annotations

import itertools

import pytest

from agora.core.errors import IllegalTransition
from agora.core.task_states import (
    PARTITION_AWARE_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    TaskState,
    can_transition,
    transition,
    visible_state,
)

S = TaskState
ALL = list(TaskState)
LIVE = [S.STAGING, S.STARTING, S.RUNNING, S.KILLING]


def test_terminal_states_are_those_of_mesos():
    assert {
        S.FINISHED,
        S.FAILED,
        S.KILLED,
        S.ERROR,
        S.LOST,
        S.DROPPED,
        S.GONE,
        S.GONE_BY_OPERATOR,
    } == TERMINAL_STATES
    for state in (S.STAGING, S.STARTING, S.RUNNING, S.KILLING, S.UNREACHABLE, S.UNKNOWN):
        assert not state.is_terminal


def test_wire_names():
    assert S.STAGING.value == "TASK_STAGING"
    assert S.GONE_BY_OPERATOR.value == "TASK_GONE_BY_OPERATOR"
    assert all(s.value == f"TASK_{s.name}" for s in ALL)


def test_every_state_has_a_row():
    assert set(TRANSITIONS) == set(ALL)


@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
@pytest.mark.parametrize("new", ALL)
def test_terminal_states_are_absorbing(terminal, new):
    if new is terminal:
        assert transition(terminal, new) is terminal  # a duplicate is harmless
    else:
        assert not can_transition(terminal, new)
        with pytest.raises(IllegalTransition) as info:
            transition(terminal, new)
        assert terminal.value in str(info.value) and new.value in str(info.value)


@pytest.mark.parametrize("current", [*LIVE, S.UNREACHABLE])
@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_live_states_may_end_in_any_terminal_state(current, terminal):
    assert transition(current, terminal) is terminal


@pytest.mark.parametrize("current", ALL)
def test_nothing_goes_back_to_staging_or_to_unknown(current):
    assert not can_transition(current, S.UNKNOWN)
    if current is not S.STAGING:
        assert not can_transition(current, S.STAGING)


@pytest.mark.parametrize("current", [S.RUNNING, S.KILLING])
def test_running_does_not_go_back_to_starting(current):
    with pytest.raises(IllegalTransition):
        transition(current, S.STARTING)


def test_the_usual_lives():
    path = [S.STAGING, S.STARTING, S.RUNNING, S.KILLING, S.KILLED]
    for a, b in itertools.pairwise(path):
        assert transition(a, b) is b
    assert transition(S.STAGING, S.RUNNING) is S.RUNNING
    assert transition(S.RUNNING, S.UNREACHABLE) is S.UNREACHABLE
    assert transition(S.UNREACHABLE, S.RUNNING) is S.RUNNING  # the agent came back
    assert transition(S.KILLING, S.RUNNING) is S.RUNNING


def test_unknown_is_never_a_current_state():
    assert TRANSITIONS[S.UNKNOWN] == frozenset()
    with pytest.raises(IllegalTransition):
        transition(S.UNKNOWN, S.RUNNING)


@pytest.mark.parametrize("state", ALL)
def test_visible_state(state):
    assert visible_state(state, partition_aware=True) is state
    expected = S.LOST if state in PARTITION_AWARE_STATES else state
    assert visible_state(state, partition_aware=False) is expected


def test_partition_aware_states():
    assert {S.DROPPED, S.UNREACHABLE, S.GONE, S.GONE_BY_OPERATOR, S.UNKNOWN} == (
        PARTITION_AWARE_STATES
    )
