"""One worker pool for the stages whose work spreads over processes: 01's episodes and 04's evaluations.

A pool keeps ``workers`` workers. Each is an object ``factory(*init_args)``, built once in its own process
(``LocalPool``: a local process; ``RayPool``: a Ray actor), and ``run(calls)`` makes
the calls ``(method, args)`` on whichever worker is free, returning the results in call order. The stages
only build the calls; where they run changes nothing, because a call's result depends only on its
arguments.

Both kinds of pool detect trouble the same way:
- a worker that dies (its process ends, or building it fails) is replaced by a fresh one, and the call it
  had is made again;
- when no call finishes within ``timeout`` seconds (starting a fresh worker included), every busy worker
  counts as hung and is replaced likewise;
- after ``retries`` replacements within one ``run``, ``WorkerError``; so is an exception raised by a call
  itself, which would only be raised again.
Local workers are forked from a fork server, a clean process started once per stage that has imported the stage's
modules (torch among them) once: a worker starts in a fraction of a second instead of importing them again, and
replacing one is as cheap.
Interrupts are the stage's to handle: a local worker never acts on SIGINT or SIGTERM (blocked from its first
instruction, ignored once it runs; a Ctrl-C reaches the whole process group, also while a worker still starts),
and a pool left by an exception (KeyboardInterrupt included) kills its workers at once, so none outlives the stage
or keeps playing for it.
A worker starts when there is a call for it: a pool never runs more workers than its largest batch of calls, and
``make`` refuses up front a number of local workers whose memory the machine does not have.
With one worker, ``InlinePool`` makes the calls in this process: nothing to detect, nothing to replace.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait

from pipeline.compute import ray_backend
from pipeline.contract.errors import UsageError, WorkerError

Call = tuple[str, tuple]


class Pool:
    """What every pool offers: ``run`` the calls, ``close`` the workers."""

    def run(self, calls: Sequence[Call], on_result: Callable[[int, object], None] = lambda index, result: None) -> list:
        """The result of each call, in order; ``on_result(index, result)`` is called as each one arrives."""
        raise NotImplementedError

    def close(self, abort: bool = False) -> None:
        """End the workers: when their work is done, or (``abort``) at once, whatever they are doing."""
        raise NotImplementedError

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, kind, *exc) -> None:
        self.close(abort=kind is not None)


class InlinePool(Pool):
    """One worker, in this process."""

    def __init__(self, factory: Callable, init_args: tuple):
        self.worker = factory(*init_args)

    def run(self, calls, on_result=lambda index, result: None) -> list:
        results = []
        for i, (method, args) in enumerate(calls):
            results.append(getattr(self.worker, method)(*args))
            on_result(i, results[-1])
        return results

    def close(self, abort: bool = False) -> None:
        self.worker = None


class SlotPool(Pool):
    """The replacement rules, for any kind of worker slot. A subclass starts, calls, waits on and kills the
    worker in slot ``a``; ``wait`` returns what happened to the busy slots: (slot, "ok" | "died" | "failed",
    result or message), empty when nothing happened within the timeout."""

    def __init__(self, workers: int, timeout: float, retries: int, what: str):
        self.timeout, self.retries, self.what = timeout, retries, what
        self.a_worker = f"{'an' if what[0] in 'aeiou' else 'a'} {what} worker"
        self.workers = workers
        self.slots: list[int] = []  # the workers started so far: each when a batch first had a call for it

    def _grow(self, calls: int) -> None:
        """Start workers until there are as many as ``calls`` (at most ``workers``)."""
        try:
            for a in range(len(self.slots), min(self.workers, calls)):
                self._start(a)
                self.slots.append(a)
        except BaseException:  # an interrupt while starting them: none of those started may outlive the stage
            self.close(abort=True)
            raise

    def _start(self, a: int) -> None: raise NotImplementedError
    def _submit(self, a: int, call: Call) -> None: raise NotImplementedError
    def _wait(self, busy: list[int], timeout: float) -> list[tuple[int, str, object]]: raise NotImplementedError
    def _kill(self, a: int) -> None: raise NotImplementedError

    def run(self, calls, on_result=lambda index, result: None) -> list:
        results: dict[int, object] = {}
        todo = list(range(len(calls)))[::-1]  # popped from the end: calls start in order
        running: dict[int, int] = {}  # slot → call index
        self._grow(len(calls))
        idle = self.slots[::-1]
        replaced = 0

        def replace(a: int, why: str, detail: str = "") -> None:
            nonlocal replaced
            if replaced == self.retries:
                raise WorkerError(f"{why}, {self.retries + 1} times in one batch; check the machine (or cluster) and "
                                  "its free memory, then re-run the same command to resume")
            replaced += 1
            print(f"warning: {why}{detail}; starting a fresh worker to do its work again", file=sys.stderr, flush=True)
            self._kill(a)
            self._start(a)
            todo.append(running.pop(a))
            idle.append(a)

        while todo or running:
            while todo and idle:
                a = idle.pop()
                running[a] = todo.pop()
                self._submit(a, calls[running[a]])
            events = self._wait(list(running), self.timeout)
            if not events:
                for a in list(running):
                    replace(a, f"no {self.what} finished within --task-timeout {self.timeout:g} s (a worker hung)")
                continue
            for a, outcome, value in events:
                if outcome == "died":
                    replace(a, f"{self.a_worker} died", f" ({value})" if value else "")
                elif outcome == "failed":
                    raise WorkerError(f"{self.a_worker} failed ({value}); re-run the same command to resume")
                else:
                    i = running.pop(a)
                    results[i] = value
                    idle.append(a)
                    on_result(i, value)
        return [results[i] for i in range(len(calls))]


_INTERRUPTS = {signal.SIGINT, signal.SIGTERM}


@contextmanager
def _born_deaf() -> Iterator[None]:
    """A worker process started in this block has SIGINT and SIGTERM blocked from its first instruction until
    ``_serve`` ignores them: a worker unpickles and builds itself first, and a Ctrl-C to the process group then
    would end it with a KeyboardInterrupt traceback. A thread's signal mask is inherited through fork and exec,
    so this thread blocks both while it starts the worker (and, the first time, the fork server, whose forks
    inherit its mask in turn); this process's own handlers stay as they are, so a signal sent to it meanwhile is
    handled (by another thread's delivery, or when the block ends), never lost. The resource tracker is started
    first: starting it unblocks these signals in the thread that starts it."""
    resource_tracker.ensure_running()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _INTERRUPTS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _serve(recipe: bytes, conn: Connection) -> None:
    """A local worker's life: build the worker from the pickled (factory, init_args) (exit 1 if that fails: the
    pool counts it as died), then answer calls until the pipe closes. Interrupts are left to the stage's process,
    which ends its workers: ignored from the start (``_born_deaf``), before the factory's (slow) imports."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # ignoring a pending signal drops it
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _INTERRUPTS)  # blocked since its birth (``_born_deaf``)
    try:
        factory, init_args = pickle.loads(recipe)
        worker = factory(*init_args)
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
    while True:
        try:
            method, args = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        try:
            reply = ("ok", getattr(worker, method)(*args))
        except BaseException as e:
            reply = ("failed", traceback.format_exception_only(e)[-1].strip())
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):
            return  # the stage has ended (an error, Ctrl-C) while this call ran: nobody is left to answer
        except Exception as e:  # a result that does not pickle
            conn.send(("failed", traceback.format_exception_only(e)[-1].strip()))


class LocalPool(SlotPool):
    """Worker processes on this machine, forked from the fork server: a fresh interpreter (no thread, lock or
    state of the stage's own process is inherited) that imported the stage's script and the worker's module once.
    The first pool of a process chooses what the server imports; a later pool's workers import what else they need.
    """

    def __init__(self, factory: Callable, init_args: tuple, workers: int, timeout: float, retries: int = 3,
                 what: str = "task", start_method: str = "forkserver"):
        self.recipe = pickle.dumps((factory, init_args))
        self.ctx = mp.get_context(start_method)  # "spawn": each worker imports everything itself (bench/bench.py)
        if start_method == "forkserver":
            self.ctx.set_forkserver_preload(["__main__", factory.__module__])  # no effect once the server runs
        self.procs: dict[int, mp.Process] = {}
        self.conns: dict[int, Connection] = {}
        super().__init__(workers, timeout, retries, what)

    def _start(self, a: int) -> None:
        ours, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=_serve, args=(self.recipe, theirs), daemon=True)
        with _born_deaf():
            proc.start()
        theirs.close()
        self.procs[a], self.conns[a] = proc, ours

    def _submit(self, a: int, call: Call) -> None:
        try:
            self.conns[a].send(call)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            pass  # it died: its sentinel says so at the next wait

    def _wait(self, busy: list[int], timeout: float) -> list[tuple[int, str, object]]:
        handles = {}
        for a in busy:
            handles[self.conns[a]] = a
            handles[self.procs[a].sentinel] = a
        events = {}
        for handle in wait(list(handles), timeout):
            a = handles[handle]
            if a in events:
                continue
            try:
                if self.conns[a].poll():
                    events[a] = (a, *self.conns[a].recv())
                    continue
            except (EOFError, ConnectionResetError):
                pass
            self.procs[a].join(timeout=1)
            events[a] = (a, "died", f"exit code {self.procs[a].exitcode}")
        return list(events.values())

    def _kill(self, a: int) -> None:
        proc = self.procs.pop(a, None)
        conn = self.conns.pop(a, None)
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()  # SIGKILL ends a stopped or hung process too
            proc.join()

    def close(self, abort: bool = False) -> None:
        """Idle workers exit when their pipe closes; those that have not within a few seconds, or all at once
        with ``abort``, are killed."""
        for conn in self.conns.values():
            conn.close()
        deadline = time.monotonic() + (0 if abort else 5)
        for proc in self.procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                proc.kill()
                proc.join()
        self.procs, self.conns = {}, {}


class RayPool(SlotPool):
    """The worker pool (``pipeline.compute.pool``) on Ray actors, one CPU each: the same calls, the same rules for dead
    and hung workers; ``ray.kill`` ends a hung actor."""

    def __init__(self, factory, init_args: tuple, workers: int, timeout: float, retries: int, what: str,
                 address: str | None):
        self.ray = ray_backend.start(address, workers)
        self.actor = self.ray.remote(num_cpus=1)(factory)
        self.init_args = init_args
        self.actors: dict[int, object] = {}
        self.running: dict = {}  # ObjectRef → slot
        super().__init__(workers, timeout, retries, what)

    def _start(self, a: int) -> None:
        self.actors[a] = self.actor.remote(*self.init_args)

    def _submit(self, a: int, call) -> None:
        method, args = call
        self.running[getattr(self.actors[a], method).remote(*args)] = a

    def _wait(self, busy: list[int], timeout: float) -> list[tuple[int, str, object]]:
        ray = self.ray
        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=timeout)
        events = []
        for ref in ready:
            a = self.running.pop(ref)
            try:
                events.append((a, "ok", ray.get(ref)))
            except ray.exceptions.RayActorError:
                events.append((a, "died", None))
            except ray.exceptions.RayTaskError as e:
                events.append((a, "failed", str(e).strip().splitlines()[-1]))
        return events

    def _kill(self, a: int) -> None:
        for ref, slot in list(self.running.items()):
            if slot == a:
                del self.running[ref]
        self.ray.kill(self.actors.pop(a), no_restart=True)

    def close(self, abort: bool = False) -> None:
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)
        self.actors, self.running = {}, {}
        ray_backend.stop()


# What one local worker holds, conservatively: a CarRacing evaluator with V and M measured about 360 MB resident.
WORKER_MEMORY = 400 * 2**20


def available_memory() -> int | None:
    """Bytes this machine can give new processes without swapping (Linux's MemAvailable, page cache included;
    elsewhere the free pages), or None where neither is known."""
    try:
        with open("/proc/meminfo") as fh:
            line = next(x for x in fh if x.startswith("MemAvailable:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def needed(workers: int, calls: int | None) -> int:
    """How many of ``workers`` a pool whose largest batch is ``calls`` calls ever starts."""
    return workers if calls is None else max(1, min(workers, calls))


def check_workers(backend: str, workers: int, calls: int | None = None) -> None:
    """Refuse up front, in one line, local workers (``--workers``, at most ``calls`` of them started) whose memory
    is more than the machine has available: they would be started one by one until the OOM killer ends the
    stage. A stage calls this before it writes anything; ``make`` calls it again."""
    started = needed(workers, calls)
    free = available_memory()
    if backend != "local" or started == 1 or free is None or started * WORKER_MEMORY <= free:
        return
    raise UsageError(f"--workers {workers}: {started} worker processes need about {started * WORKER_MEMORY / 2**30:.1f} "
                     f"GB ({WORKER_MEMORY // 2**20} MB each) but this machine has {free / 2**30:.1f} GB available: "
                     f"pass --workers {max(1, free // WORKER_MEMORY)} or fewer")


def make(backend: str, factory: Callable, init_args: tuple, workers: int, timeout: float, what: str,
         address: str | None = None, retries: int = 3, calls: int | None = None) -> Pool:
    """The pool of ``--backend``: Ray actors (``ray``), or local processes (one worker: this process). ``calls``:
    the most calls one ``run`` will get; no more workers than that are ever started. Local workers are checked
    against the machine's memory (``check_workers``) and, when they outnumber its cores, a warning line says so
    (they share the cores; the run goes on)."""
    requested, workers = workers, needed(workers, calls)
    if backend == "ray":
        return RayPool(factory, init_args, workers, timeout, retries, what, address)
    if backend != "local":
        raise UsageError(f"--backend {backend}: choose local or ray")
    if workers == 1:
        return InlinePool(factory, init_args)
    check_workers(backend, requested, calls)
    cores = os.cpu_count() or 1
    if workers > cores:
        print(f"warning: --workers {requested} starts {workers} worker processes on {cores} cores; they share the "
              f"cores (--workers {cores} gives each its own)", file=sys.stderr, flush=True)
    return LocalPool(factory, init_args, workers, timeout, retries, what)
