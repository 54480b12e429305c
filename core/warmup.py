"""
Feeding backfilled bars to strategies' indicators before their first live bar.

NautilusTrader's cache does not reach indicators: an indicator only sees the bars passed to
``Actor.handle_bar``. ``WarmUp`` watches each actor's ``register_indicator_for_bars`` calls;
when the actor's ``on_start`` has returned (its ``STARTING`` state event, published before it
goes ``RUNNING`` and before the node can deliver a live bar) it replays the cached bars of
every backfilled bar type the actor registered indicators for, oldest first, through
``handle_bar(bar, historical=True)``: the path a ``request_bars`` response takes, so the
indicators update and ``on_historical_data`` sees each bar.

Live handoff: a live bar not newer than the last bar fed (the same interval arriving again
from the adapter) is not passed on, so no indicator counts a bar twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from nautilus_trader.common.component import Logger
from nautilus_trader.common.enums import ComponentState
from nautilus_trader.model.data import Bar, BarType

_WATCHED = "_nautilus_backfill_warm_up"


def warm_up(actor: Any, *bar_types: BarType | str) -> int:
    """
    Feed the cached bars of `bar_types` to `actor`'s indicators and ``on_historical_data``.

    The explicit form of the automatic warm-up, for ``warm_up = false`` configs: call it in
    ``on_start`` after ``register_indicator_for_bars`` and before ``subscribe_bars``::

        warm_up(self, self.config.bar_type)

    Parameters
    ----------
    actor : Actor
        The actor or strategy (registered with a trader, so it has a cache).
    *bar_types : BarType | str
        The bar types to feed.

    Returns
    -------
    int
        The number of bars fed.

    """
    fed = 0
    for bar_type in bar_types:
        bt = BarType.from_str(bar_type) if isinstance(bar_type, str) else bar_type
        bars = list(reversed(actor.cache.bars(bt)))  # the cache holds newest first
        _guard(actor).last[bt.id_spec_key()] = bars[-1].ts_init if bars else 0
        for bar in bars:
            actor.handle_bar(bar, True)
        fed += len(bars)
    return fed


class _Guard:
    """Drops live bars not newer than the last bar fed; installed on the actor instance."""

    def __init__(self, actor: Any) -> None:
        self.last: dict[tuple, int] = {}
        self.skipped = 0
        self._handle_bar = actor.handle_bar

    def __call__(self, bar: Bar, historical: bool = False) -> None:
        if not historical and bar.ts_init <= self.last.get(bar.bar_type.id_spec_key(), 0):
            self.skipped += 1
            return
        self._handle_bar(bar, historical)


def _guard(actor: Any) -> _Guard:
    # An instance attribute shadows the class's handle_bar: subscribe_bars and
    # unsubscribe_bars both look it up on the instance, so they register and remove this one.
    guard = actor.__dict__.get("handle_bar")
    if not isinstance(guard, _Guard):
        guard = _Guard(actor)
        actor.handle_bar = guard
    return guard


class WarmUp:
    """
    Automatic warm-up of the actors and strategies of a trader.

    Parameters
    ----------
    trader : Trader
        The node's trader (``node.trader``).
    msgbus : MessageBus
        The node's message bus.
    log : Logger, optional
        Where to say what was fed.

    """

    def __init__(
        self,
        trader: Any,
        msgbus: Any,
        log: Logger | None = None,
    ) -> None:
        self._trader = trader
        self._msgbus = msgbus
        self._keys: dict[tuple, BarType] = {}
        self._log = log or Logger("Backfill")
        self._actors: dict[str, Any] = {}
        self.fed: dict[str, dict[str, int]] = {}

    @classmethod
    def of(cls, node: Any) -> WarmUp:
        """
        Return the warm-up installed on a built node, installing it the first time.

        Parameters
        ----------
        node : TradingNode
            The node, built and not yet running.

        Returns
        -------
        WarmUp

        """
        warm = node.trader.__dict__.get(_WATCHED)
        if warm is None:
            warm = cls(node.trader, node.kernel.msgbus)
            warm.install()
            node.trader.__dict__[_WATCHED] = warm
        return warm

    def add(self, bar_types: Iterable[BarType]) -> None:
        """
        Warm up these bar types too.

        Parameters
        ----------
        bar_types : Iterable[BarType]
            Backfilled bar types.

        """
        self._keys.update({bt.id_spec_key(): bt for bt in bar_types})

    def install(self) -> None:
        """Watch every actor and strategy the trader has, and those added later."""
        for actor in [*self._trader.actors(), *self._trader.strategies()]:
            self.watch(actor)
        for name in ("add_actor", "add_strategy"):
            original = getattr(self._trader, name)
            setattr(self._trader, name, self._watching(original))
        self._msgbus.subscribe("events.system.*", self._on_state)

    def watch(self, actor: Any) -> None:
        """
        Record which indicators `actor` registers for which bar types, from now on.

        Parameters
        ----------
        actor : Actor
            The actor or strategy.

        """
        if _WATCHED in actor.__dict__:
            return
        registered: list[tuple[BarType, Any]] = []
        original = actor.register_indicator_for_bars

        def register_indicator_for_bars(bar_type: BarType, indicator: Any) -> None:
            original(bar_type, indicator)
            registered.append((bar_type, indicator))

        actor.register_indicator_for_bars = register_indicator_for_bars
        actor.__dict__[_WATCHED] = registered
        _guard(actor)
        self._actors[str(actor.id)] = actor

    def _watching(self, add: Callable[[Any], None]) -> Callable[[Any], None]:
        def add_and_watch(actor: Any) -> None:
            add(actor)
            self.watch(actor)

        return add_and_watch

    def _on_state(self, event: Any) -> None:
        actor = self._actors.get(str(event.component_id))
        if actor is None:
            return
        registered = actor.__dict__[_WATCHED]
        if event.state == ComponentState.READY:
            registered.clear()  # reset() drops the actor's registrations; on_start makes new ones
            return
        if event.state != ComponentState.STARTING:
            return
        counts = {}
        for key, bar_type in self._keys.items():
            indicators = [ind for bt, ind in registered if bt.id_spec_key() == key]
            if not indicators:
                continue
            if any(ind.has_inputs for ind in indicators):
                # A restart, or indicators warmed some other way: feeding again would count
                # these bars twice.
                if not all(ind.has_inputs for ind in indicators):
                    self._log.warning(
                        f"warm-up: {actor.id} has indicators for {bar_type} that already have "
                        "inputs next to fresh ones; not fed, to count no bar twice",
                    )
                continue
            n = warm_up(actor, bar_type)
            if n:
                counts[str(bar_type)] = n
        if counts:
            self.fed[str(actor.id)] = counts
            fed = ", ".join(f"{n} {bt}" for bt, n in counts.items())
            self._log.info(f"warm-up: fed {fed} bars to {actor.id}")
