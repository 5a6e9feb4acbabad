"""``Client``: start runs, await their results and follow their events over trine's HTTP API.

A thin layer over ``httpx.AsyncClient``: the gateway speaks JSON, so runs come back as the
gateway's dicts (``id``, ``function``, ``status``, ``input``, ``result``, ``error``, ``attempt``,
``created_at``, ``updated_at``, ``cancel_requested``, ``deadline``, ``waiting``, ...) rather than
as classes that would need to track its schema.
Waiting uses the gateway's long poll (``?wait=SECONDS``), so a result arrives as soon as the run
ends, without polling on a timer.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, overload
from urllib.parse import quote

import httpx

from trine_proto.trine.v1 import RunStatus
from trine_proto.vocabulary import FINAL_STATUSES as _FINAL_RUN_STATUSES
from trine_proto.vocabulary import status_name

from . import _events
from ._declared import return_type, workflow_name
from ._events import Event
from ._events import client_error as _client_error
from ._tls import client_verify
from .converter import Converter, PydanticConverter
from .errors import RunFailedError

T = TypeVar("T")
InputT = TypeVar("InputT")
OutputT = TypeVar("OutputT")

DEFAULT_URL = "http://127.0.0.1:7480"
# Statuses as the HTTP API spells them ("completed"), not as the RunStatus enum.
FINAL_STATUSES = frozenset(status_name(status) for status in _FINAL_RUN_STATUSES)
COMPLETED = status_name(RunStatus.COMPLETED)
# One long poll asks for at most this long (the gateway allows up to 300 s): a shorter poll
# survives proxies with idle timeouts and lets a caller's timeout be honoured closely.
LONG_POLL_S = 60.0


class Client:
    """An async client for the gateway at ``base_url`` (default ``$TRINE_URL`` or
    ``http://127.0.0.1:7480``). Use it as ``async with trine.Client() as client: ...`` or call
    ``aclose()``. ``timeout`` bounds each request (long polls get their wait on top).
    ``converter`` turns inputs and signal payloads into JSON and results back into declared
    types (default: ``trine.PydanticConverter``). ``token`` (default ``$TRINE_TOKEN``) is the
    API token a gateway with a tokens file asks for: sent as ``Authorization: Bearer`` on every
    request, event streams included; a gateway that refuses it raises ``ClientError`` with code
    ``unauthenticated`` (401) or ``permission_denied`` (403, the token lacks the scope)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
        converter: Converter | None = None,
        token: str | None = None,
    ) -> None:
        self.converter: Converter = converter or PydanticConverter()
        self.base_url = base_url or os.environ.get("TRINE_URL") or DEFAULT_URL
        self.timeout = timeout
        token = token or os.environ.get("TRINE_TOKEN", "").strip()
        if token and not any(name.lower() == "authorization" for name in headers or {}):
            headers = {**(headers or {}), "authorization": f"Bearer {token}"}
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers=headers,
            verify=client_verify(),  # TRINE_TLS_CA: the CA of an https:// gateway
        )

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- runs ------------------------------------------------------------------------------------

    async def start(
        self,
        function: str | Callable[..., Awaitable[Any]],
        input: Any = None,
        idempotency_key: str | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the run's deadline, not this call's
    ) -> dict[str, Any]:
        """Start a run of ``function`` (a registered name, or the workflow function itself)
        with ``input`` (JSON values, a pydantic model, a dataclass... as the converter takes);
        the run as the gateway returns it.

        With an ``idempotency_key`` used before, that earlier run comes back instead. A
        ``timeout`` (seconds) is the run's deadline: if it has not finished by then, it fails
        with ``RunTimeout``.
        """
        return await self._start(function, input, idempotency_key, wait=None, run_timeout=timeout)

    async def get(self, run_id: str) -> dict[str, Any]:
        """The run as it is now (``ClientError`` with code ``run_not_found`` if unknown)."""
        return await self._json("GET", f"/v1/runs/{run_id}")

    async def wait(self, run_id: str, timeout: float = 60.0) -> dict[str, Any]:  # noqa: ASYNC109
        """The run once final (completed, failed or cancelled); ``TimeoutError`` after
        ``timeout`` seconds."""
        return await self._wait_until(run_id, time.monotonic() + timeout, timeout)

    async def _wait_until(self, run_id: str, deadline: float, seconds: float) -> dict[str, Any]:
        """``wait`` until the monotonic ``deadline``; ``seconds`` is the caller's timeout, for the
        error (``run`` spends part of it on its start request: the error names the whole)."""
        while True:
            remaining = deadline - time.monotonic()
            wait = min(max(remaining, 0.001), LONG_POLL_S)
            run = await self._json(
                "GET",
                f"/v1/runs/{run_id}",
                params={"wait": f"{wait:.3f}"},
                request_timeout=wait + self.timeout,
            )
            if run.get("status") in FINAL_STATUSES:
                return run
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"run {run_id} is still {run.get('status')} after {seconds:g} seconds"
                )

    @overload
    async def result(
        self,
        run_id: str,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        result_type: type[T],
    ) -> T: ...

    @overload
    async def result(
        self,
        run_id: str,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        result_type: None = None,
    ) -> Any: ...

    async def result(
        self,
        run_id: str,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        result_type: Any = None,
    ) -> Any:
        """The run's result once it completed, as a ``result_type`` when given (else plain
        JSON); ``RunFailedError`` if it failed or was cancelled, ``TimeoutError`` if it is not
        final after ``timeout`` seconds, ``ConversionError`` if it does not fit the type."""
        return self._outcome(await self.wait(run_id, timeout), result_type)

    @overload
    async def run(
        self,
        function: Callable[[Any, InputT], Awaitable[OutputT]],
        input: InputT,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        idempotency_key: str | None = None,
        run_timeout: float | None = None,
    ) -> OutputT: ...

    @overload
    async def run(
        self,
        function: str,
        input: Any = None,
        timeout: float = 60.0,  # noqa: ASYNC109
        *,
        idempotency_key: str | None = None,
        run_timeout: float | None = None,
    ) -> Any: ...

    async def run(
        self,
        function: str | Callable[..., Awaitable[Any]],
        input: Any = None,
        timeout: float = 60.0,  # noqa: ASYNC109 - the run's deadline, spanning several requests
        *,
        idempotency_key: str | None = None,
        run_timeout: float | None = None,
    ) -> Any:
        """Start a run and return its result (as ``result()``): one request for a quick run.

        ``function`` is a registered name (the result comes back as plain JSON) or the
        workflow function itself, imported from the worker's code (typed: mypy checks ``input``
        against its input parameter, and the result comes back as its return annotation).
        ``timeout`` is how long to wait for the result here (``TimeoutError`` after it; the run
        goes on); ``run_timeout`` is the run's own deadline (as ``start(timeout=...)``), after
        which it fails with ``RunTimeout``.
        """
        deadline = time.monotonic() + timeout
        run = await self._start(
            function,
            input,
            idempotency_key,
            wait=min(max(timeout, 0.001), LONG_POLL_S),
            run_timeout=run_timeout,
        )
        if run.get("status") not in FINAL_STATUSES:
            run = await self._wait_until(str(run["id"]), deadline, timeout)
        return self._outcome(run, None if isinstance(function, str) else return_type(function))

    async def cancel(
        self, run_id: str, reason: str = "", *, wait: float | None = None
    ) -> dict[str, Any]:
        """Cancel a run that is not final; the run as the gateway answers it (``ClientError``
        ``run_finished`` if it already ended).

        A run that never took a step is ``cancelled`` at once. Otherwise the cancellation is
        requested: the run comes back not final yet, with ``cancel_requested`` true, while the
        workflow cleans up; it ends as ``cancelled``, at the latest at ``cancel_deadline``. With
        ``wait`` (seconds, at most 300), the gateway answers once the run is final or the wait
        runs out; ``wait(run_id)`` waits longer.
        """
        body = {"reason": reason} if reason else None
        params = {"wait": f"{wait:.3f}"} if wait is not None else None
        return await self._json(
            "POST",
            f"/v1/runs/{run_id}/cancel",
            json=body,
            params=params,
            request_timeout=self.timeout + (wait or 0),
        )

    async def signal(self, run_id: str, name: str, payload: Any = None) -> dict[str, Any]:
        """Send the signal ``name`` with a JSON ``payload`` to a run that is not final.

        The answer is ``{"run_id", "signal", "delivered", "run"}``: ``delivered`` is true when
        the run was waiting for this signal (it resumes with ``payload``), false when the signal
        is kept until the run waits for one of this name (the run's ``kept_signals`` counts
        them). ``ClientError`` with code ``run_not_found``, ``run_finished`` (409),
        ``kept_signals_full`` (409: the run keeps as many as ``[engine] max_kept_signals`` or
        ``max_kept_signal_bytes`` allow; ``details.limit`` names it) or ``invalid_argument`` (a
        name that is not 1 to 200 characters of letters, digits and ``_ . : -``).
        """
        return await self._json(
            "POST",
            f"/v1/runs/{run_id}/signals/{quote(name, safe='')}",
            # always a JSON document, ``null`` included
            content=self.converter.to_json(payload, f"the payload of signal {name!r}"),
            headers={"content-type": "application/json"},
        )

    async def list_runs(
        self,
        *,
        status: str | None = None,
        function: str | None = None,
        limit: int | None = None,
        page_token: str | None = None,
        newest_first: bool = False,
    ) -> dict[str, Any]:
        """One page of runs in creation order (``newest_first``: the newest first):
        ``{"runs": [...], "next_page_token": ...}``."""
        params = {
            key: value
            for key, value in (
                ("status", status),
                ("function", function),
                ("limit", limit),
                ("page_token", page_token),
                ("newest_first", "true" if newest_first else None),
            )
            if value is not None
        }
        return await self._json("GET", "/v1/runs", params=params)

    async def retry(self, run_id: str, reason: str = "") -> dict[str, Any]:
        """Resume a ``failed`` (or timed out) or ``blocked`` run from its journal: the steps that
        succeeded replay, the failed one runs again on the code the workers run now. The run
        as it is now (``pending`` again, same id); ``ClientError`` ``run_not_retryable`` (409)
        for a run in any other state. See docs/versioning.md."""
        body = {"reason": reason} if reason else None
        return await self._json("POST", f"/v1/runs/{quote(run_id, safe='')}/retry", json=body)

    async def move(self, run_id: str, build_id: str) -> dict[str, Any]:
        """Make a run that is not final continue only on ``build_id`` (a pinned run whose build
        is gone); ``ClientError`` ``unknown_build`` (409) for a build no worker registered the
        run's function with."""
        return await self._json(
            "POST", f"/v1/runs/{quote(run_id, safe='')}/move", json={"build_id": build_id}
        )

    async def history(self, run_id: str) -> dict[str, Any]:
        """The run and its journal in the ``trine.history/1`` format, for
        ``trine.testing.replay`` (docs/versioning.md)."""
        return await self._json("GET", f"/v1/runs/{quote(run_id, safe='')}/history")

    async def list_builds(self) -> dict[str, Any]:
        """Every build a worker registered: ``{"builds": [{"build_id", "functions",
        "open_runs", "connected", "last_seen"}]}``."""
        return await self._json("GET", "/v1/builds")

    async def list_functions(self) -> dict[str, Any]:
        """Every function a worker registered: ``{"functions": [{"name", "retry", ...}]}``."""
        return await self._json("GET", "/v1/functions")

    async def list_workers(self) -> dict[str, Any]:
        """The workers connected to the coordinators: ``{"workers": [{"worker_id",
        "functions", "max_concurrency", "in_flight", "free_slots", "last_heartbeat_at", ...}]}``
        (``ClientError`` with code ``not_found`` from a gateway without ``GET /v1/workers``)."""
        return await self._json("GET", "/v1/workers")

    async def journal(self, run_id: str) -> list[dict[str, Any]]:
        """The run's journaled steps (index, name, output, error, attempt, ...)."""
        answer = await self._json("GET", f"/v1/runs/{run_id}/journal")
        entries: list[dict[str, Any]] = answer["entries"]
        return entries

    def events(
        self,
        run_id: str,
        last_event_id: int | str | None = None,
        *,
        reconnect_timeout: float | None = 60.0,
    ) -> AsyncIterator[Event]:
        """The run's events as :class:`~trine.Event` objects (``id``, ``type``, ``name``,
        ``data``, ``at``), live, each once and in order, ending after the run's final event
        (``run.completed``, ``run.failed`` or ``run.cancelled``)::

            async for event in client.events(run_id):
                print(event.id, event.type, event.name, event.data)

        Pass the last ``id`` you saw as ``last_event_id`` to start after it. When the stream
        breaks (a connection reset, a restart of the runtime, an HTTP 503, the stream's error
        event), it resumes by itself after the last event it yielded, backing off between
        tries, also when the first connection fails; an outage longer than
        ``reconnect_timeout`` seconds (``None``: no limit) raises the last error. An unknown run
        raises ``ClientError`` (``run_not_found``) at once.
        """
        after = int(last_event_id) if last_event_id is not None else None
        return _events.follow(
            self._http,
            run_id,
            after=after,
            reconnect_timeout=reconnect_timeout,
            connect_timeout=self.timeout,
        )

    # -- plumbing --------------------------------------------------------------------------------

    def _outcome(self, run: dict[str, Any], result_type: Any) -> Any:
        """A final run's result as ``result_type`` (None: plain JSON), or ``RunFailedError``."""
        if run.get("status") != COMPLETED:
            raise RunFailedError(run)
        result = run.get("result")
        if result_type is None:
            return result
        what = f"the result of run {run.get('id')} ({run.get('function')!r})"
        return self.converter.from_json(_compact(result), result_type, what)

    async def _start(
        self,
        function: str | Callable[..., Awaitable[Any]],
        input: Any,
        idempotency_key: str | None,
        wait: float | None,
        run_timeout: float | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        params = {"wait": f"{wait:.3f}"} if wait is not None else None
        name = workflow_name(function)
        # The input goes in as the converter's JSON, spliced into the body as it is.
        data = self.converter.to_json(input, f"the input of a run of {name!r}")
        body = b'{"function":' + _compact(name) + b',"input":' + data
        if run_timeout is not None:
            body += b',"timeout_s":' + _compact(run_timeout)
        return await self._json(
            "POST",
            "/v1/runs",
            content=body + b"}",
            headers={"content-type": "application/json", **(headers or {})},
            params=params,
            request_timeout=self.timeout + (wait or 0),
        )

    async def _json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        response = await self._http.request(
            method,
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            timeout=request_timeout if request_timeout is not None else self.timeout,
        )
        if response.status_code >= 400:
            raise _client_error(response)
        body: dict[str, Any] = response.json()
        return body


def _compact(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
