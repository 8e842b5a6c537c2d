"""Errors from tasks: the user's exception class, nested tasks, Ray errors, pickling every error class."""
from __future__ import annotations

import time

import pytest

import raylab as ray
from raylab import exceptions as exc


@ray.remote
def add(a, b):
    return a + b


# -- errors from nested tasks, Ray errors inside tasks, unpicklable exceptions ------------
@ray.remote
def deep_child():
    raise ValueError("deep")


@ray.remote
def deep_parent():
    return ray.get(deep_child.remote())


def test_nested_task_error_keeps_the_users_class(cluster2):
    with pytest.raises(ValueError) as info:
        ray.get(deep_parent.remote())
    err = info.value
    assert isinstance(err, exc.RayTaskError)
    assert type(err).__name__ == "RayTaskError(ValueError)"
    assert type(err.cause) is ValueError and str(err.cause) == "deep"
    text = str(err)
    # Ray's form: the outer task's header and frames, then the inner error, one level each
    assert text.startswith("ray::deep_parent() (pid=")
    assert "ray::deep_child() (pid=" in text and text.rstrip().endswith("ValueError: deep")
    assert "in deep_parent" in text and "in deep_child" in text
    # raylab's own frames (ray.get inside the task) are not the user's business
    assert "raylab/api.py" not in text and "objects.py" not in text
    assert "Traceback (most recent call last)" not in text


def test_ray_error_inside_a_task_keeps_its_class(cluster2):
    @ray.remote
    def sleeper():
        time.sleep(5)  # far longer than the get's timeout; cancelled right after it

    @ray.remote
    def impatient():
        ref = sleeper.remote()
        try:
            return ray.get(ref, timeout=0.05)
        finally:
            ray.cancel(ref, force=True)

    with pytest.raises(exc.GetTimeoutError) as info:
        ray.get(impatient.remote())
    assert isinstance(info.value, exc.RayTaskError) and isinstance(info.value, TimeoutError)
    assert type(info.value).__name__ == "RayTaskError(GetTimeoutError)"
    assert "Get timed out" in str(info.value) and "raylab/api.py" not in str(info.value)


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):  # pickle rebuilds it with self.args only: it cannot be rebuilt
        super().__init__(f"needs {a} and {b}")


def test_exception_that_cannot_be_rebuilt_comes_back_as_its_text(cluster2):
    @ray.remote
    def raises_custom():
        raise NeedsTwoArgs(1, 2)

    with pytest.raises(exc.UnserializableException) as info:
        ray.get(raises_custom.remote())
    text = str(info.value)
    assert text.startswith("Failed to deserialize exception.")
    assert "NeedsTwoArgs: needs 1 and 2" in text  # the original text, with its traceback
    assert "ray::raises_custom() (pid=" in text and "raise NeedsTwoArgs(1, 2)" in text
    assert ray.get(add.remote(1, 1)) == 2


# -- every error class survives pickling (errors travel between processes) ----------------
def _error_samples() -> dict:
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1, in f\nValueError: v'
    return {
        exc.RayError: exc.RayError("plain"),
        exc.RaySystemError: exc.RaySystemError("boom", "tb text"),
        exc.RayTaskError: exc.RayTaskError("f", tb, ValueError("v"), pid=12),
        exc.UnserializableException: exc.UnserializableException("Bad: bad 1"),
        exc.WorkerCrashedError: exc.WorkerCrashedError("the worker died"),
        exc.TaskCancelledError: exc.TaskCancelledError("ab"),
        exc.GetTimeoutError: exc.GetTimeoutError("Get timed out"),
        exc.RayActorError: exc.RayActorError("actor gone", actor_id="aa"),
        exc.ActorDiedError: exc.ActorDiedError("died", cause=ValueError("x"), actor_id="bb"),
        exc.ActorAlreadyExistsError: exc.ActorAlreadyExistsError("name taken"),
        exc.ActorUnavailableError: exc.ActorUnavailableError("restarting", actor_id="cc"),
        exc.ActorUnschedulableError: exc.ActorUnschedulableError("no node"),
        exc.TaskUnschedulableError: exc.TaskUnschedulableError("no node"),
        exc.ObjectLostError: exc.ObjectLostError("ff" * 28, "owner-addr", "site"),
        exc.ObjectFetchTimedOutError: exc.ObjectFetchTimedOutError("ee" * 28),
        exc.OwnerDiedError: exc.OwnerDiedError("dd" * 28, "owner-addr"),
        exc.ObjectReconstructionFailedError: exc.ObjectReconstructionFailedError("cc" * 28),
        exc.ObjectReconstructionFailedMaxAttemptsExceededError:
            exc.ObjectReconstructionFailedMaxAttemptsExceededError("bb" * 28, message="max"),
        exc.ObjectReconstructionFailedLineageEvictedError:
            exc.ObjectReconstructionFailedLineageEvictedError("aa" * 28),
        exc.ReferenceCountingAssertionError: exc.ReferenceCountingAssertionError("99" * 28),
        exc.ObjectStoreFullError: exc.ObjectStoreFullError("full"),
        exc.OutOfDiskError: exc.OutOfDiskError("disk"),
        exc.OutOfMemoryError: exc.OutOfMemoryError("oom"),
        exc.NodeDiedError: exc.NodeDiedError("node died"),
        exc.RuntimeEnvSetupError: exc.RuntimeEnvSetupError("env"),
        exc.PendingCallsLimitExceeded: exc.PendingCallsLimitExceeded("too many"),
        exc.CrossLanguageError: exc.CrossLanguageError("java"),
    }


def test_error_samples_cover_every_class():
    classes = {v for v in vars(exc).values()
               if isinstance(v, type) and issubclass(v, BaseException)
               and v.__module__ == exc.__name__}
    assert classes == set(_error_samples())


@pytest.mark.parametrize("cls", list(_error_samples()), ids=lambda c: c.__name__)
def test_every_error_class_round_trips_through_pickle(cls):
    import pickle

    import cloudpickle

    err = _error_samples()[cls]
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(err))
        assert type(back) is cls
        assert str(back) == str(err)
        assert vars(back) == vars(err) or _same_attrs(back, err)
        assert back.args == err.args or cls is exc.RayTaskError


def _same_attrs(a, b) -> bool:
    def norm(v):
        return (type(v), str(v)) if isinstance(v, BaseException) else v
    return {k: norm(v) for k, v in vars(a).items()} == {k: norm(v) for k, v in vars(b).items()}


def test_task_cancelled_error_reads_like_rays():
    import pickle
    e = exc.TaskCancelledError("ab")
    assert str(e) == "Task: ab was cancelled. "
    back = pickle.loads(pickle.dumps(e))
    assert back.task_id == "ab" and back.error_message is None and str(back) == str(e)


def test_dual_task_error_pickles_back_to_a_task_error():
    import pickle
    dual = exc.RayTaskError("f", "tb", KeyError("k"), pid=3).as_instanceof_cause()
    assert isinstance(dual, KeyError) and isinstance(dual, exc.RayTaskError)
    back = pickle.loads(pickle.dumps(dual))
    assert isinstance(back, exc.RayTaskError) and str(back) == str(dual)
    assert isinstance(back.as_instanceof_cause(), KeyError)
