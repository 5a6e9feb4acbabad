"""What a refused report means for the run that sent it.

A refusal is not always the run's failure: a lost lease means another attempt owns the run now,
and an unavailable engine may come back. Both ends of a run read the same codes, so the rules
are written once here: mid-run (a step, a wait, an emit) a refusal ends the attempt or aborts the
run; on the run's final report there is nothing left to abort, so it is only logged.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from trine_proto.trine.v1 import ErrorInfo, ReportAck
from trine_proto.vocabulary import TRANSIENT_CODES, ErrorCode, ErrorType

from ._session import Session
from .errors import AttemptEnded, RunAborted

RunLog = logging.LoggerAdapter[logging.Logger]


def raise_refusal(ack: ReportAck, log: RunLog, session: Session) -> NoReturn:
    """End the attempt (lease lost, engine unavailable) or abort the run (any other refusal)."""
    if ack.error_code == ErrorCode.LEASE_LOST:
        # Another attempt owns the run now (or it was cancelled): nothing of ours counts.
        log.info("lease lost; this attempt ends (%s)", ack.error_message)
        raise AttemptEnded("lease lost")
    if ack.error_code in TRANSIENT_CODES:
        # The engine may come back (unavailable, or its storage failed until a restart);
        # failing the run would be wrong. Start the stream over:
        # that releases this run's lease, and the run is dispatched again and replays.
        log.warning("the engine is unavailable (%s); reconnecting", ack.error_message)
        session.abort(f"engine unavailable: {ack.error_message}")
        raise AttemptEnded("engine unavailable")
    raise RunAborted(
        ErrorInfo(
            type=ErrorType.REPORT_REFUSED,
            message=f"the engine refused a report: {ack.error_code}: {ack.error_message}",
            retryable=False,
        )
    )


def log_final_ack(ack: ReportAck, log: RunLog, session: Session, what: str) -> None:
    """Log how the run's final report (``what``: "completed", "failed (...)") was answered; an
    unavailable engine still starts the stream over, so the run is dispatched again."""
    code, message = ack.error_code, ack.error_message
    if not code:
        log.debug("run %s", what)
    elif code == ErrorCode.LEASE_LOST:
        log.info("lease lost before the run's end was recorded (%s)", message)
    elif code in TRANSIENT_CODES:
        log.warning("the engine is unavailable (%s); reconnecting", message)
        session.abort(f"engine unavailable: {message}")
    else:
        log.error("the engine refused the run's final report: %s: %s", code, message)
