"""The one worker pool: local processes and Ray actors replace dead and hung workers by the same rules."""
from __future__ import annotations

import os

import pytest

from conftest import import_or_missing
from pipeline.compute import pool
from pipeline.contract.errors import WorkerError
from tests.pool_workers import Flaky, Unbuildable

BACKENDS = ["local", pytest.param("ray", marks=pytest.mark.ray)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "ray":
        import_or_missing("ray")
    return request.param


def test_a_dead_or_hung_worker_is_replaced_and_its_call_made_again(backend, tmp_path, capfd):
    with pool.make(backend, Flaky, (str(tmp_path),), workers=2, timeout=8, what="test") as workers:
        got = []
        assert workers.run([("ok", (1,)), ("die", (2,)), ("ok", (3,))], on_result=lambda i, r: got.append(i)) == [10, 20, 30]
        assert sorted(got) == [0, 1, 2]
        assert workers.run([("hang", (4,)), ("ok", (5,))]) == [40, 50]
    err = capfd.readouterr().err
    assert "a test worker died" in err and "a worker hung" in err


def test_a_call_that_raises_is_not_retried(backend, tmp_path):
    with pool.make(backend, Flaky, (str(tmp_path),), workers=2, timeout=30, what="test") as workers:
        with pytest.raises(WorkerError, match=r"a test worker failed \(ValueError: no good: 7\)"):
            workers.run([("fail", (7,))])


def test_workers_run_at_the_stages_priority(backend, tmp_path):
    """Ray's own default, nice 15, starves actors on a machine that runs anything else: a local Ray's are at 0."""
    with pool.make(backend, Flaky, (str(tmp_path),), workers=2, timeout=60, what="test") as workers:
        assert workers.run([("niceness", ())] * 2) == [os.nice(0)] * 2


def test_workers_that_cannot_start_are_replaced_then_given_up_on(tmp_path):
    with pool.make("local", Unbuildable, (), workers=2, timeout=30, what="test", retries=2) as workers:
        with pytest.raises(WorkerError, match="a test worker died, 3 times in one batch"):
            workers.run([("ok", (1,))])


def test_one_worker_runs_in_this_process(tmp_path):
    workers = pool.make("local", Flaky, (str(tmp_path),), workers=1, timeout=1, what="test")
    assert isinstance(workers, pool.InlinePool)
    assert workers.run([("ok", (i,)) for i in range(3)]) == [0, 10, 20]
