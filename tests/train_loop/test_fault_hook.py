"""vlmtrain.train.testing: the fault-injection hook runs only while a step is being saved, and
VLMTRAIN_TEST_KILL_AT is parsed in one place (the kill itself is exercised by test_train.py)."""

import pytest

from vlmtrain.train import testing


@pytest.fixture(autouse=True)
def _clean():
    yield
    testing.install(None)
    testing.saving(None)


def test_hook_sees_points_of_the_step_being_saved_only():
    seen = []
    testing.install(lambda point, step: seen.append((point, step)))
    testing.reached("deepspeed_saved")  # no save in progress: nothing
    testing.saving(6)
    testing.reached("model_states")
    testing.reached("before_latest")
    testing.saving(None)
    testing.reached("before_latest")
    assert seen == [("model_states", 6), ("before_latest", 6)]


def test_no_hook_installed_is_a_no_op():
    testing.saving(3)
    testing.reached("model_states")  # returns: nothing installed


def test_env_installs_a_kill_hook_only_when_set(monkeypatch):
    testing.install_from_env({})
    assert not testing._hook
    killed = []
    monkeypatch.setattr(testing.os, "kill", lambda pid, sig: killed.append(sig))
    testing.install_from_env({testing.KILL_ENV: "model_states@6"})
    testing.saving(3)
    testing.reached("model_states")  # another step
    testing.saving(6)
    testing.reached("deepspeed_saved")  # another point
    testing.reached("model_states")
    assert killed == [testing.signal.SIGKILL]


@pytest.mark.parametrize("value", ["model_states", "model_states@x", "nowhere@6"])
def test_env_value_that_names_no_point_and_step_is_refused(value):
    with pytest.raises(ValueError, match="VLMTRAIN_TEST_KILL_AT"):
        testing.install_from_env({testing.KILL_ENV: value})
