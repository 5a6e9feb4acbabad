"""Instruments: the counters, gauges and histograms trine's roles record into (issue 11).

Dependency-free and cheap on the hot path: recording is plain Python arithmetic on a small object
(a counter's ``inc`` is one addition, a histogram's ``observe`` one ``bisect`` and two additions),
and nothing is exported unless an observer plugin reads the registry (``trine-metrics`` turns it
into Prometheus metric families when it is scraped). Roles declare their instruments at module
level, in the process-wide :data:`REGISTRY`, each documented where it is defined (name, unit,
labels, meaning)::

    from trine_core.instruments import REGISTRY

    RUNS_STARTED = REGISTRY.counter(
        "trine_runs_started_total", "Runs created (children included).", ("function",)
    )
    RUNS_STARTED.labels("order").inc()

Names follow Prometheus conventions: ``trine_`` prefix, base units (``_seconds``), counters end in
``_total``. Label values must stay few: function names (bounded by registrations), statuses,
route templates; never run ids.

Kinds:

- :class:`Counter`: only goes up. ``labels(*values).inc(amount)``.
- :class:`Gauge`: a value set, raised or lowered (``set``/``inc``/``dec``), and/or callbacks read
  at collection time (``add_callback``: queue depths, connected workers), summed per label set.
- :class:`Histogram`: observations counted into fixed buckets (upper bounds, inclusive, as
  Prometheus's ``le``), with their sum.

Threads. Recording takes no lock: do it from one thread per instrument (every trine role records
from its event loop's thread). ``+=`` on an attribute is not atomic, so two threads recording into
one instrument may now and then lose an observation; they never corrupt it. Collecting from
another thread is safe for set values (each is copied); a gauge's callbacks run in the thread
that collects, and trine's callbacks read the roles' in-memory state, which only the event loop
may touch: ``trine-metrics`` therefore collects on the event loop.
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

Labels = tuple[str, ...]
"""Label values, in the order of the instrument's label names."""
GaugeReading = float | Mapping[Labels, float]
"""What a gauge callback returns: the value (an unlabelled gauge), or a value per label set."""

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Seconds, 100 µs to 5 s: journal appends and commits, dispatch."""
REQUEST_BUCKETS: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
"""Seconds, 1 ms to 5 min: HTTP requests (long-polls and event streams last long)."""
DURATION_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip
"""Seconds, 1 ms to a day: steps and runs (a run may sleep for hours)."""
SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
"""Counts: records per group commit."""


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """One label set's value at collection time."""

    labels: Labels
    value: float
    """A counter's or gauge's value; a histogram's sum of observations."""
    buckets: tuple[int, ...] = ()
    """A histogram's cumulative counts: one per bound of its family, then +Inf (its count)."""

    @property
    def count(self) -> int:
        """A histogram's number of observations."""
        return self.buckets[-1] if self.buckets else 0


@dataclasses.dataclass(frozen=True, slots=True)
class Family:
    """An instrument as collected: what an exporter turns into its own format."""

    name: str
    kind: str
    """``counter``, ``gauge`` or ``histogram``."""
    help: str
    labelnames: Labels
    samples: tuple[Sample, ...]
    bounds: tuple[float, ...] = ()
    """A histogram's bucket upper bounds (+Inf implied)."""


C = TypeVar("C")


class Instrument(abc.ABC, Generic[C]):
    """What every kind shares: a name, a help line, label names, and one child per label set."""

    kind: ClassVar[str]

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        if not name.startswith("trine_") or not name.replace("_", "").isalnum():
            raise ValueError(f"instrument name {name!r}: use trine_ and [a-z0-9_]")
        self.name = name
        self.help = help
        self.labelnames: Labels = tuple(labelnames)
        self._children: dict[Labels, C] = {}
        self._unlabelled: C | None = self._new_child() if not self.labelnames else None

    def labels(self, *values: str) -> C:
        """The child recording for these label values (created on first use, then cached)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(
                    f"{self.name} has labels {self.labelnames}; got {len(values)} values"
                )
            child = self._children[values] = self._new_child()
        return child

    def _root(self) -> C:
        if self._unlabelled is None:
            raise ValueError(f"{self.name} has labels {self.labelnames}: use .labels(...)")
        return self._unlabelled

    def _items(self) -> list[tuple[Labels, C]]:
        # list() of a dict's items is one C call: safe while the event loop adds a child.
        items = list(self._children.items())
        if self._unlabelled is not None:
            items.insert(0, ((), self._unlabelled))
        return items

    @abc.abstractmethod
    def _new_child(self) -> C:
        """A new series of this instrument (a counter's, a gauge's, a histogram's)."""

    @abc.abstractmethod
    def collect(self) -> Family:
        """Every series' current value, for an exporter."""


class CounterChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class Counter(Instrument[CounterChild]):
    """A total that only goes up (events, seconds spent)."""

    kind = "counter"

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (an unlabelled counter)."""
        self._root().value += amount

    def collect(self) -> Family:
        samples = tuple(Sample(labels, child.value) for labels, child in self._items())
        return Family(self.name, self.kind, self.help, self.labelnames, samples)


class GaugeChild:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount


class Gauge(Instrument[GaugeChild]):
    """A value that goes up and down: set by the code that knows it, or read at collection time
    from callbacks (:meth:`add_callback`). Several sources of one label set are summed (two
    engines of one test process each add their ready queue)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help, labelnames)
        self._callbacks: list[Callable[[], GaugeReading]] = []

    def _new_child(self) -> GaugeChild:
        return GaugeChild()

    def set(self, value: float) -> None:
        self._root().value = value

    def inc(self, amount: float = 1.0) -> None:
        self._root().value += amount

    def dec(self, amount: float = 1.0) -> None:
        self._root().value -= amount

    def add_callback(self, callback: Callable[[], GaugeReading]) -> Callable[[], None]:
        """Read ``callback`` at each collection, in the collecting thread: it returns the value
        (an unlabelled gauge) or a mapping of label values to values. Returns the function that
        removes it again (call it when the state it reads goes away)."""
        self._callbacks.append(callback)

        def remove() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return remove

    def collect(self) -> Family:
        values: dict[Labels, float] = {labels: child.value for labels, child in self._items()}
        for callback in list(self._callbacks):
            reading = callback()
            if isinstance(reading, Mapping):
                for labels, value in reading.items():
                    self._check(labels)
                    values[labels] = values.get(labels, 0.0) + value
            else:
                self._check(())
                values[()] = values.get((), 0.0) + reading
        samples = tuple(Sample(labels, value) for labels, value in values.items())
        return Family(self.name, self.kind, self.help, self.labelnames, samples)

    def _check(self, labels: Labels) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"a callback of {self.name} gave labels {labels}")


class HistogramChild:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """Per bucket, not cumulative; the last one is +Inf."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def snapshot(self, labels: Labels) -> Sample:
        counts, total = list(self.counts), self.sum
        cumulative, running = [], 0
        for count in counts:
            running += count
            cumulative.append(running)
        return Sample(labels, total, tuple(cumulative))


class Histogram(Instrument[HistogramChild]):
    """Observations (durations, sizes) counted into fixed buckets, with their sum."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if not bounds or list(bounds) != sorted(set(bounds)) or math.isinf(bounds[-1]):
            raise ValueError(f"{name}: buckets must be finite and strictly increasing")
        self.bounds = bounds
        super().__init__(name, help, labelnames)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.bounds)

    def observe(self, value: float) -> None:
        """Count ``value`` (an unlabelled histogram)."""
        self._root().observe(value)

    def collect(self) -> Family:
        samples = tuple(child.snapshot(labels) for labels, child in self._items())
        return Family(self.name, self.kind, self.help, self.labelnames, samples, self.bounds)


class Registry:
    """The instruments of a process, by name. Roles register into :data:`REGISTRY`; tests make
    their own."""

    def __init__(self) -> None:
        self._instruments: dict[str, Instrument[Any]] = {}

    def register(self, instrument: Instrument[C]) -> None:
        if instrument.name in self._instruments:
            raise ValueError(f"instrument {instrument.name!r} is registered twice")
        self._instruments[instrument.name] = instrument

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        counter = Counter(name, help, labelnames)
        self.register(counter)
        return counter

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        gauge = Gauge(name, help, labelnames)
        self.register(gauge)
        return gauge

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Iterable[float] = LATENCY_BUCKETS,
    ) -> Histogram:
        histogram = Histogram(name, help, labelnames, buckets)
        self.register(histogram)
        return histogram

    def get(self, name: str) -> Instrument[Any] | None:
        return self._instruments.get(name)

    def names(self) -> list[str]:
        return list(self._instruments)

    def collect(self) -> list[Family]:
        """Every instrument's current values, in registration order."""
        return [instrument.collect() for instrument in list(self._instruments.values())]


REGISTRY = Registry()
"""The process's instruments: what trine's roles record into and ``trine-metrics`` exports."""
