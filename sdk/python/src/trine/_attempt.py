"""What every ``ctx`` call of one attempt shares: the journal cursor, the order its reports go
out in, the patch markers and step results waiting to go out with them, what the workflow has
been told of a cancellation, and how an ack is settled.

A step's result is *held* (``hold_result``) rather than sent at once: the workflow goes on with
it while the SDK waits for the next report of the run to carry it (the next step's start, a
wait, an event, the run's end), so a workflow that ends after its last step commits that step's
result and its completion at once. Deterministic workflow code may run on a result that is not
durable yet; nothing with an effect outside the worker may: a step body waits until every result
the workflow has seen is durable (``make_durable``), and a wait, a child's start, an event or the
run's end carry the held results in their own report, in the same commit. A result is never held
past the moment the workflow's task yields to the loop without a ``ctx`` call: then it goes out
alone (``_flush_soon``), so a slow ``asyncio.gather`` partner never keeps a finished step's result
from being durable.

Steps and waits are separate modules, but they interleave in one workflow (``asyncio.gather``
of steps, a wait after a step) and must agree on all of this, so it lives in one object that
both are handed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from trine_proto.trine.v1 import (
    CancelObserved,
    Command,
    EntryKind,
    ErrorInfo,
    JournalEntry,
    Patched,
    ReportAck,
    ReportResponse,
)
from trine_proto.vocabulary import MAX_SIGNAL_NAME, SIGNAL_NAME

from . import _codec
from ._acks import RunLog, raise_refusal
from ._journal import Journal, entry_value
from ._session import RunReporter
from .converter import Converter, PydanticConverter
from .errors import CancelledError, NonDeterminismError


class Turn:
    """A call's place in the order of reports: it sends its final report only after the call
    before it has settled, so steps run concurrently still reach the journal in index order.
    For sequential calls the previous turn is always released already and waiting costs
    nothing."""

    def __init__(self, previous: asyncio.Event) -> None:
        self._previous = previous
        self.released = asyncio.Event()

    async def wait(self) -> None:
        await self._previous.wait()

    def release(self) -> None:
        self.released.set()


class Attempt:
    """One attempt of a run, as its ``ctx`` calls see it."""

    def __init__(
        self,
        *,
        run_id: str,
        function: str,
        journal: Journal,
        reporter: RunReporter,
        max_payload_bytes: int,
        log: RunLog,
        cancel_requested: bool,
        executor: Executor | None = None,
        converter: Converter | None = None,
    ) -> None:
        self.run_id = run_id
        # How payloads become JSON and come back as the declared types (``converter``).
        self.converter: Converter = converter or PydanticConverter()
        self.function = function
        # Where sync steps run (the worker's step threads; None: the loop's default executor).
        self.executor = executor
        self.journal = journal
        self.reporter = reporter
        self.max_payload_bytes = max_payload_bytes
        self.log = log
        # Set once the run is known to be unrecoverable: it ends (blocked or failed) even if the
        # workflow catches it.
        self.fatal_error: NonDeterminismError | None = None
        # Commands by journal position, not sent yet, each marked whether it carries a step's
        # result the workflow has seen: patch markers (``ctx.patched`` is sync, so its marker
        # goes out with the next report in journal order) and held step results
        # (``hold_result``), sent with the next report in journal order (``send``).
        self._held: list[tuple[int, Command, bool]] = []
        # The reports that carried held results and whose acks no step body has waited for yet.
        self._carrying: list[asyncio.Future[ReportAck]] = []
        # The last report carrying journal entries, until its ack: the next one goes out only
        # after it (``_report``), so two of them are never in flight at once.
        self._in_flight: asyncio.Future[ReportAck] | None = None
        self._flush_handle: asyncio.Handle | None = None
        self.cancel_requested = cancel_requested
        # Once the workflow got its CancelledError it may clean up with more steps: those must
        # not be interrupted, nor told again.
        self.cancel_delivered = False
        self.inner: set[asyncio.Future[Any]] = set()  # async steps running now
        self.interrupted: set[asyncio.Future[Any]] = set()  # those a cancellation stopped
        self.threaded: list[str] = []  # sync steps running in a thread now, which nothing stops
        self._last_turn = asyncio.Event()
        self._last_turn.set()

    # -- the journal -----------------------------------------------------------------------------

    def next(self, kind: EntryKind, name: str) -> tuple[int, JournalEntry | None]:
        """The journal's ``next``, remembering what it told the workflow: a non-determinism
        fails the run even if caught, a replayed cancellation counts as delivered."""
        try:
            return self.journal.next(kind, name)
        except CancelledError:
            self.cancel_delivered = True
            raise
        except NonDeterminismError as error:
            self.fatal_error = error
            raise

    @property
    def fatal(self) -> ErrorInfo | None:
        """``fatal_error`` described for the engine (its traceback as far as it got)."""
        if self.fatal_error is None:
            return None
        return _codec.error_info(self.fatal_error, retryable=False)

    def patched(self, change_id: str) -> bool:
        """``ctx.patched``: whether the code takes the new path of ``change_id`` here; a first
        pass holds a marker for the next report (see ``send``)."""
        check_change_id(change_id)
        index, new_path, journal_it = self.journal.patch(change_id)
        if journal_it:
            marker = Command(patched=Patched(index=index, change_id=change_id))
            self._held.append((index, marker, False))
        return new_path

    def deprecate_patch(self, change_id: str) -> None:
        """``ctx.deprecate_patch``: step over ``change_id``'s marker where the journal has it."""
        check_change_id(change_id)
        self.journal.deprecate_patch(change_id)

    def value(self, entry: JournalEntry, type_: Any = None, what: str = "") -> Any:
        """The entry's value as a ``type_`` (None: plain JSON; ``what`` names it for a
        conversion error) or its error (see ``entry_value``), a cancellation counted as told."""
        try:
            if type_ is None:
                return entry_value(entry)
            return entry_value(
                entry, lambda data: self.converter.from_json(data, type_, what or entry.name)
            )
        except CancelledError:
            self.cancel_delivered = True
            raise

    # -- report order ----------------------------------------------------------------------------

    def send(self, *commands: Command, index: int | None) -> asyncio.Future[ReportAck]:
        """Send a report in journal order (its call's turn came), the held commands (patch
        markers, step results) for positions before ``index`` first (all of them for a run's
        final report: ``None``).

        The engine journals entries strictly in index order, so a marker must neither overtake
        an earlier call still running concurrently nor fall behind a later one: only reports
        sent in their turn carry markers (a step's early ``StepStarted`` announcement does not).
        """
        return self._send_held(lambda i: index is None or i < index, commands)

    def hold_result(self, index: int, *commands: Command) -> None:
        """Hold a step's result (its ``commands``: the step's start if not announced, its
        ``StepCompleted``) for the next report, in its turn; it goes out alone once the
        workflow's task yields to the loop first (``_flush_soon``)."""
        self._held.extend((index, command, True) for command in commands)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush_soon)

    async def make_durable(self, *extra: Command) -> bool:
        """Before an effect outside the worker (a step's body): wait until every result the
        workflow has seen is durable, sending the held ones now, with ``extra`` (the next
        step's ``StepStarted``) in the same report. Whether ``extra`` went out."""
        sent = False
        if any(result for _, _, result in self._held):
            last = max(i for i, _, result in self._held if result)
            # Every position up to the last held result is held or sent already (a result is
            # held in its turn, after every call before it), so this prefix goes out in order.
            self._send_held(lambda i: i <= last, extra)
            sent = True
        carrying = list(self._carrying)
        for future in carrying:
            await self.settle(future)
        self._carrying = [f for f in self._carrying if f not in carrying]
        return sent

    def discard_held(self) -> None:
        """The attempt ended: nothing more of it goes out (its lease is over or ending)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._held.clear()

    def _flush_soon(self) -> None:
        """The workflow's task yielded with results still held: send them alone, now."""
        self._flush_handle = None
        if any(result for _, _, result in self._held):
            last = max(i for i, _, result in self._held if result)
            self._send_held(lambda i: i <= last, ())

    def _send_held(
        self, due_at: Callable[[int], bool], commands: tuple[Command, ...]
    ) -> asyncio.Future[ReportAck]:
        """Send the held commands at the positions ``due_at`` accepts (in index order), then
        ``commands``, in one report."""
        due = [held for held in self._held if due_at(held[0])]
        if due:
            self._held = [held for held in self._held if not due_at(held[0])]
        due.sort(key=lambda held: held[0])  # stable: a step's start stays before its end
        future = self._report(*(c for _, c, _ in due), *commands)
        if any(result for _, _, result in due):
            self._carrying.append(future)
        return future

    def _report(self, *commands: Command) -> asyncio.Future[ReportAck]:
        """Queue a report carrying journal entries behind the last one, once that one's ack
        came: reports of a run must reach the engine in order, and the path to it (a task per
        report in the coordinator, a gRPC call per report in the split) does not promise that
        for two reports in flight at once. In-turn reports never overlap anyway; only a held
        result sent alone (``_flush_soon``, ``make_durable``) may be followed at once."""
        previous = self._in_flight
        if previous is None or previous.done():
            future = self.reporter.send(*commands)
        else:
            future = asyncio.get_running_loop().create_future()

            def go(_: asyncio.Future[ReportAck]) -> None:
                _chain(self.reporter.send(*commands), future)

            previous.add_done_callback(go)
        self._in_flight = future
        return future

    def claim_turn(self) -> Turn:
        """The next place in the order of reports, behind every call that claimed one before."""
        turn = Turn(self._last_turn)
        self._last_turn = turn.released
        return turn

    # -- cancellation ----------------------------------------------------------------------------

    def request_cancel(self) -> None:
        """Interrupt the async steps running now, unless the workflow already got its
        cancellation and is cleaning up."""
        self.cancel_requested = True
        if self.cancel_delivered:
            return
        for task in self.inner:
            if not task.done():
                self.interrupted.add(task)
                task.cancel()
        for name in self.threaded:
            self.log.info(
                "step %r runs in a thread, which cannot be interrupted: the workflow hears of "
                "the cancellation at its next ctx call once the step returned",
                name,
                extra={"step": name},
            )

    async def deliver_pending_cancel(self, index: int, name: str) -> None:
        """If the run is being cancelled and the workflow was not told yet, tell it at the call
        that just took ``index``: journal the position (so a replay raises at the same call)
        and raise ``CancelledError``."""
        if not self.cancel_requested or self.cancel_delivered:
            return
        self.cancel_delivered = True
        turn = self.claim_turn()
        try:
            await turn.wait()
            observed = CancelObserved(index=index, name=name)
            await self.settle(self.send(Command(cancel_observed=observed), index=index))
        finally:
            turn.release()
        raise CancelledError(f"run {self.run_id} is being cancelled")

    # -- acks ------------------------------------------------------------------------------------

    async def settle(self, future: asyncio.Future[ReportAck]) -> ReportResponse:
        """Await one ack and act on a refusal; the response otherwise."""
        ack = await future
        self.check(ack)
        # Not `or`: a betterproto2 message's truth compares every field with its default.
        return ack.response if ack.response is not None else ReportResponse()

    def check(self, ack: ReportAck) -> None:
        """Act on a refusal (see ``raise_refusal``); note a cancellation the ack announces."""
        if ack.error_code:
            raise_refusal(ack, self.log, self.reporter.session)
        if ack.response is not None and ack.response.cancel_requested:
            self.cancel_requested = True


def _chain(source: asyncio.Future[ReportAck], target: asyncio.Future[ReportAck]) -> None:
    """Resolve ``target`` as ``source`` resolves (cancelled with it: the stream ended)."""

    def copy(done: asyncio.Future[ReportAck]) -> None:
        if target.done():
            return
        if done.cancelled():
            target.cancel()
        else:
            target.set_result(done.result())

    source.add_done_callback(copy)


def check_change_id(change_id: str) -> None:
    """A change id follows the signal-name rule (it is shown in URLs and the console alike)."""
    if (
        not isinstance(change_id, str)
        or not 1 <= len(change_id) <= MAX_SIGNAL_NAME
        or SIGNAL_NAME.fullmatch(change_id) is None
    ):
        raise ValueError(
            f"{change_id!r} is not a valid change id: a change id is 1 to {MAX_SIGNAL_NAME} "
            "characters of letters, digits and _ . : - (the signal-name rule)"
        )
