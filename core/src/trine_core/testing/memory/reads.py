"""The ``Backend`` side of :class:`~trine_core.testing.memory.MemoryEngine`: starting, reading,
waiting for, following, cancelling, signalling, retrying and moving runs, and listing the
functions and the builds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter, deque
from collections.abc import AsyncIterator

from trine_core import errors
from trine_core.idempotency import check_same_request, request_digest
from trine_core.names import check_duration, check_signal_name
from trine_core.testing.memory.runs import Runs, json_bytes
from trine_proto.trine import v1 as pb
from trine_proto.vocabulary import FINAL_EVENT_TYPES, status_name
from trine_proto.vocabulary import EventType as _E

DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT = 50, 1000
_S, _K = pb.RunStatus, pb.EntryKind


class Reads(Runs):
    async def start_run(self, message: pb.StartRunRequest) -> pb.StartRunResponse:
        self._record("start_run", message)
        answer = self._accept(message)
        if message.wait_ms <= 0 or answer.run is None:
            return answer
        state = self._require(answer.run.id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(message.wait_ms / 1000):
                await self._until(lambda: state.final)
        return pb.StartRunResponse(run=self._view(state), created=answer.created, waited=True)

    def _accept(self, message: pb.StartRunRequest) -> pb.StartRunResponse:
        spec, key = self.functions.get(message.function), message.idempotency_key
        if spec is None:
            what = f"no worker has registered function {message.function!r}"
            raise errors.UnknownFunction(
                what, function=message.function, known=sorted(self.functions)
            )
        payload = self._check_size(message.input, "the run's input")
        check_duration(message.timeout_ms, f"the timeout of a run of {spec.name!r}")
        digest = request_digest(spec.name, payload, message.timeout_ms)
        if key in self._keys:
            run_id, stored = self._keys[key]
            earlier = self._runs[run_id]
            check_same_request(key, stored, digest, earlier.run, spec.name, payload)
            return pb.StartRunResponse(run=self._view(earlier), created=False)
        state = self._start(
            spec,
            payload,
            message.timeout_ms,
            idempotency_key=key,
            trace_context=dict(message.trace_context),
        )
        if key:
            self._keys[key] = (state.run.id, digest)
        return pb.StartRunResponse(run=self._view(state), created=True)

    async def get_run(self, message: pb.GetRunRequest) -> pb.Run:
        self._record("get_run", message)
        return self._view(self._require(message.run_id))

    async def wait_run(self, message: pb.WaitRunRequest) -> pb.Run:
        self._record("wait_run", message)
        state = self._require(message.run_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(message.wait_ms / 1000):
                await self._until(lambda: state.final)
        return self._view(state)

    async def list_runs(self, message: pb.ListRunsRequest) -> pb.ListRunsResponse:
        self._record("list_runs", message)
        limit, status = min(message.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT), message.status
        token, newest_first = message.page_token, message.newest_first
        ids = sorted(self._runs, reverse=newest_first)
        ids = [i for i in ids if not token or (i < token if newest_first else i > token)]
        runs = [self._view(self._runs[run_id]) for run_id in ids]
        after, before = message.created_after_ms, message.created_before_ms
        runs = [r for r in runs if after <= r.created_at_ms < (before or r.created_at_ms + 1)]
        runs = [r for r in runs if status in (_S.UNSPECIFIED, r.status)]
        runs = [r for r in runs if message.function in ("", r.function)]
        token = runs[limit - 1].id if len(runs) > limit else ""
        return pb.ListRunsResponse(runs=runs[:limit], next_page_token=token)

    async def subscribe(self, message: pb.SubscribeRequest) -> AsyncIterator[pb.Event]:
        """Recorded once iterated (an async generator, like the engine's); counted in
        ``open_subscriptions`` until it ends or is closed; raises ``fail_with`` once it is set."""
        self._record("subscribe", message)
        state, sent = self._require(message.run_id), message.after_seq

        def news() -> bool:
            return len(state.events) > sent or state.final or self._fail_with is not None

        self.open_subscriptions += 1
        try:
            while True:
                await self._until(news)
                if self._fail_with is not None:
                    raise self._fail_with
                if sent >= len(state.events):
                    return  # final, and after_seq was past its last event
                sent += 1
                yield state.events[sent - 1]
                # The last event of a final run; a failed run retried goes on past it.
                if state.events[sent - 1].type in FINAL_EVENT_TYPES and sent >= len(state.events):
                    return
        finally:
            self.open_subscriptions -= 1
            self._wake()

    async def cancel_run(self, message: pb.CancelRunRequest) -> pb.Run:
        self._record("cancel_run", message)
        state = self._require(message.run_id, active=True)
        self._cancel(state, message.reason)
        return self._view(state)

    async def signal_run(self, message: pb.SignalRunRequest) -> pb.SignalRunResponse:
        self._record("signal_run", message)
        check_signal_name(name := message.name)
        payload = self._check_size(message.payload, f"the payload of signal {name!r}")
        state = self._require(message.run_id, active=True)
        wait = next((e for e in state.pending if e.kind == _K.SIGNAL and e.name == name), None)
        data = json_bytes({"delivered_to": wait.index if wait else None}, "payload", payload)
        self._event(state, _E.SIGNAL_RECEIVED, name, data)
        if wait is None:  # kept for the run's next wait of that name
            state.signals.setdefault(name, deque()).append(payload)
        else:
            self._resolve(state, wait, output=payload)
        self._settle(state)
        return pb.SignalRunResponse(run=self._view(state), delivered=wait is not None)

    async def get_journal(self, message: pb.GetJournalRequest) -> pb.GetJournalResponse:
        self._record("get_journal", message)
        return pb.GetJournalResponse(entries=list(self._require(message.run_id).journal))

    async def list_functions(self, message: pb.ListFunctionsRequest) -> pb.ListFunctionsResponse:
        self._record("list_functions", message)
        specs = [self.functions[name] for name in sorted(self.functions)]
        return pb.ListFunctionsResponse(functions=specs)

    async def retry_run(self, message: pb.RetryRunRequest) -> pb.Run:
        """A failed or blocked run resumes; RunNotRetryable (nothing changed) in any other
        state."""
        self._record("retry_run", message)
        state = self._require(message.run_id)
        if state.run.status not in (_S.FAILED, _S.BLOCKED):
            status = status_name(self._view(state).status)
            what = f"run {state.run.id} is {status}: only a failed or blocked run can be retried"
            raise errors.RunNotRetryable(what, run_id=state.run.id, status=status)
        self._retry(state, message.reason, automatic=False)
        return self._view(state)

    async def move_run(self, message: pb.MoveRunRequest) -> pb.Run:
        """The run continues only on ``build_id``; UnknownBuild when no worker registered its
        function with that build."""
        self._record("move_run", message)
        state = self._require(message.run_id, active=True)
        run, build_id = state.run, message.build_id
        if not self._builds.serves(build_id, run.function):
            known = self._builds.known_for(run.function)
            what = f"no worker has registered function {run.function!r} with build {build_id!r}"
            raise errors.UnknownBuild(what, build_id=build_id, function=run.function, known=known)
        state.run = dataclasses.replace(run, build_id=build_id)
        self._event(
            state, _E.RUN_MOVED, run.function, {"build_id": build_id, "from_build_id": run.build_id}
        )
        self._wake()
        return self._view(state)

    async def list_builds(self, message: pb.ListBuildsRequest) -> pb.ListBuildsResponse:
        self._record("list_builds", message)
        open_runs = Counter(s.run.build_id for s in self._runs.values() if not s.final)
        return pb.ListBuildsResponse(builds=self._builds.infos(open_runs, self.clock()))
