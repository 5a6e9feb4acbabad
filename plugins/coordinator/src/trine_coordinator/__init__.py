"""trine-coordinator: the role that connects workers to the engine."""

from trine_coordinator.plugin import CoordinatorRole
from trine_coordinator.service import WorkerService
from trine_coordinator.session import WorkerSession

__all__ = ["CoordinatorRole", "WorkerService", "WorkerSession"]
