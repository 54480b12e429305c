"""Configuration of the IB source."""

from __future__ import annotations

from nautilus_backfill.config import SourceConfig
from nautilus_backfill.timeutil import parse_duration

SYMBOLOGY = ("simplified", "raw")
WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK", "BID_ASK", "ADJUSTED_LAST")


class IBSourceConfig(SourceConfig, frozen=True, kw_only=True):
    """
    An IB source: TWS or IB Gateway over the TWS API, on a connection of its own.

    Parameters
    ----------
    host : str, default "127.0.0.1"
        The TWS / Gateway host.
    port : int, default 7497
        Its API port (TWS paper 7497, live 7496; Gateway paper 4002, live 4001).
    client_id : int, default 901
        The client id of the backfill's own connection; it must differ from the node's
        data and execution clients, which connect later, inside ``node.run()``.
    client_id_attempts : int, default 5
        When the id is taken (error 326), try the next ids, this many in all.
    connect_timeout : str, default "5s"
        Time allowed for the socket, the handshake and the first ``nextValidId``.
    symbology : str, default "simplified"
        The IB adapter's symbology method (``simplified`` or ``raw``); use the one your data
        client config uses, so the bar types match the live ones.
    use_rth : bool, default True
        Regular trading hours only, as ``useRTH`` in ``reqHistoricalData``.
    what_to_show : str, optional
        Overrides the ``whatToShow`` derived from the bar type's price type.
    pacing_scale : float, default 1.0
        Scales IB's pacing windows (15 s, 2 s, 10 min). Test-only: below 1 it breaks IB's rules.
    max_in_flight : int, default 50
        Historical requests open at once, across bar types and chunks (IB allows 50).
    pacing_state : str, optional
        The folder that keeps the pacing history between runs and processes (default
        ``$NAUTILUS_BACKFILL_STATE_DIR``, else ``$XDG_STATE_HOME/nautilus-backfill``, else
        ``~/.local/state/nautilus-backfill``).
    contract_max_age : str, default "7d"
        How old an instrument the host already has (the node's cache, or the store) may be
        for its IB contract and precisions to be used without asking IB for the contract
        details; older ones are looked up again (and the store keeps the fresh one).
        ``"off"`` always asks IB.

    """

    host: str = "127.0.0.1"
    port: int = 7497
    client_id: int = 901
    client_id_attempts: int = 5
    connect_timeout: str = "5s"
    symbology: str = "simplified"
    use_rth: bool = True
    what_to_show: str | None = None
    pacing_scale: float = 1.0
    max_in_flight: int = 50
    pacing_state: str | None = None
    contract_max_age: str = "7d"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            parse_duration(self.connect_timeout)
        except ValueError as e:
            raise ValueError(f"connect_timeout: {e}") from None
        if self.contract_max_age != "off":
            try:
                parse_duration(self.contract_max_age)
            except ValueError as e:
                raise ValueError(f'contract_max_age: {e} (or "off")') from None
        if self.symbology not in SYMBOLOGY:
            raise ValueError(f"symbology: must be one of simplified, raw, was '{self.symbology}'")
        if self.what_to_show is not None and self.what_to_show not in WHAT_TO_SHOW:
            choices = ", ".join(WHAT_TO_SHOW)
            raise ValueError(f"what_to_show: must be one of {choices}, was '{self.what_to_show}'")
        if self.client_id_attempts < 1:
            raise ValueError("client_id_attempts: must be at least 1")
        if not 0 < self.pacing_scale <= 1:
            raise ValueError("pacing_scale: must be in (0, 1]")
        if not 1 <= self.max_in_flight <= 50:
            raise ValueError(
                f"max_in_flight: must be 1..50 (IB allows 50 open requests), was "
                f"{self.max_in_flight}"
            )

    @property
    def contract_max_age_ns(self) -> int | None:
        """Return `contract_max_age` in nanoseconds, or None when ``"off"``."""
        if self.contract_max_age == "off":
            return None
        return int(parse_duration(self.contract_max_age) * 1_000_000_000)
