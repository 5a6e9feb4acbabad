"""``ctx.emit``: a custom event, published once per run.

An emit takes a journal position like a step: the engine journals the event there (its data as the
entry's output) and publishes it on the run's stream in the same commit. A workflow re-walks its
calls on every attempt (after a step's retry, a wait, a crash), and an emit the journal already
holds is skipped, so the event is never published twice. The position is checked like a step's: a
different call recorded there is a non-determinism.

The emit returns once its report is acknowledged, so an event the workflow got past is durable.
"""

from __future__ import annotations

from typing import Any

from trine_proto.trine.v1 import Command, Emit, EntryKind

from ._attempt import Attempt


async def emit(attempt: Attempt, name: str, data: Any) -> None:
    if not name:
        raise ValueError("an event needs a name")
    # Checked before the position is taken: a refused emit leaves the journal cursor as it was.
    what = f"the data of event {name!r} of workflow {attempt.function!r}"
    data_bytes = attempt.converter.to_json(data, what)
    limit = attempt.max_payload_bytes
    if len(data_bytes) > limit:
        raise ValueError(f"event {name!r} data is {len(data_bytes)} bytes; the limit is {limit}")
    index, entry = attempt.next(EntryKind.EMIT, name)
    if entry is not None:
        return  # published by the attempt that journaled it
    await attempt.deliver_pending_cancel(index, name)
    turn = attempt.claim_turn()  # in journal order behind the calls before it (asyncio.gather)
    try:
        await turn.wait()
        command = Command(emit=Emit(name=name, data=data_bytes, index=index))
        await attempt.settle(attempt.send(command, index=index))
    finally:
        turn.release()
