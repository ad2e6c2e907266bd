"""The Rule base class and the context a rule sees while it evaluates one record."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar

from stream_engine.core.expr import Expression, Scope
from stream_engine.core.pii import PiiInputs
from stream_engine.core.result import RuleResult, Verdict
from stream_engine.core.service import Service
from stream_engine.core.stores import StoreSpec, StoreView

P = TypeVar("P")
#: Where a CEL expression sits under a rule's (or service's) ``params``, and what it sees.
Placed = tuple[tuple[str | int, ...], Expression, Scope]


class RuleContext:
    """One record as a rule sees it: its id, its (mutable) data, every result so far,
    and a per-record memo that rules may use to avoid repeating work on one record."""

    __slots__ = ("data", "memo", "now", "record_id", "results", "stage", "stores", "tenant")

    def __init__(
        self,
        record_id: str,
        data: dict[str, Any],
        results: dict[str, RuleResult],
        stage: str = "",
        tenant: str | None = None,
        memo: dict[Any, Any] | None = None,
        now: datetime | None = None,
        stores: StoreView | None = None,
    ) -> None:
        self.record_id = record_id
        self.data = data
        self.results = results
        self.stage = stage
        self.tenant = tenant
        self.memo: dict[Any, Any] = {} if memo is None else memo
        #: The decision time: when this stage started on this record (UTC), recorded in its
        #: audit entry; rules about time read it (CEL ``now``), never the wall clock.
        self.now: datetime = now if now is not None else datetime.now(UTC)
        #: The stores of the record's partition, for stateful rules (None offline in a
        #: pipeline without them).
        self.stores = stores


class Rule(ABC, Generic[P]):
    """A business or data-quality rule. Subclasses get validated parameters and implement
    ``evaluate``, which may be a plain method or a coroutine.

    ``service_params`` names the parameters that hold service names; the engine binds those
    services before the first record, so ``self.services[name]`` is ready in ``evaluate``.
    """

    service_params: ClassVar[tuple[str, ...]] = ()
    #: True when an async ``evaluate`` binds nothing to the task it starts on (no
    #: ``asyncio.timeout`` of its own; I/O goes through ``Service`` objects), so the engine
    #: may start it without a task and move it to one only if it really waits.
    inline_safe: ClassVar[bool] = False
    #: True when a plain ``evaluate`` may return an awaitable instead of a Verdict (a rule
    #: that answers at once when it can, and awaits only when it must).
    may_await: ClassVar[bool] = False

    def __init__(self, params: P) -> None:
        self.params = params
        self.services: dict[str, Service] = {}
        #: The store of a stateful rule (``bind_store``); empty for the others.
        self.store_name = ""
        #: Its compiled spec (key fields, PII hashing), so the rule keys records as the
        #: processor partitions them; None for the others.
        self.store_spec: StoreSpec | None = None

    @classmethod
    def service_names(cls, params: Mapping[str, Any]) -> dict[str, str]:
        """The service each ``service_params`` param of raw (unvalidated) params names, so
        an unknown one is reported even when other params are invalid."""
        return {p: params[p] for p in cls.service_params if isinstance(params.get(p), str)}

    def bind_services(self, services: Mapping[str, Service]) -> None:
        """Receive the services this rule's parameters name."""
        self.services = dict(services)

    def state_key(self) -> tuple[str, ...] | None:
        """The fields a rule that remembers across records keys its store by (its stage's
        records are partitioned by them); None for a rule that remembers nothing."""
        return None

    def state_names(self) -> tuple[str, ...] | None:
        """The names of the running values this rule puts in its result's
        ``details["state"]`` (CEL reads them as ``state.<rule id>.<name>``); None when it
        puts none there. Checked at load: ``state.<rule>.<other>`` is an error."""
        return None

    def bind_store(self, name: str, spec: StoreSpec | None = None) -> None:
        """Told once at load which store is this rule's (its rule id), and its compiled spec."""
        self.store_name = name
        self.store_spec = spec

    def provides(self) -> tuple[str, ...]:
        """Fields this rule writes into the record (used to order rules that require them)."""
        return ()

    def requires(self) -> tuple[str, ...]:
        """Fields this rule needs to be present before it can run."""
        return ()

    def learn_pii(self, pii: PiiInputs) -> list[str]:
        """Called once at load with the pipeline's PII fields, so that the rule keeps values it
        derives from them (an age from a date of birth) out of its messages and details unless
        ``pii.reveal_derived`` allows them. Returns warnings, each ``param: text``, about what
        it does with PII otherwise. The default does nothing and says nothing."""
        return []

    def expressions(self) -> list[Placed]:
        """The rule's CEL expressions, each with its place under ``params`` and the scope it
        runs in, checked when the configuration loads. The default: none."""
        return []

    @abstractmethod
    def evaluate(self, ctx: RuleContext) -> Verdict | Awaitable[Verdict]:
        """Evaluate one record. Return a Verdict; raise to signal an ERROR."""
