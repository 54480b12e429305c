"""Configuration of the LEAN source."""

from __future__ import annotations

import zoneinfo

from nautilus_backfill.config import SourceConfig

SECURITY_TYPES = ("equity", "forex", "crypto", "cfd")


class LeanSourceConfig(SourceConfig, frozen=True, kw_only=True):
    """
    A QuantConnect LEAN data folder.

    Parameters
    ----------
    path : str
        LEAN's ``Data/`` folder (the one holding ``equity/``, ``forex/``, ...).
    symbols : dict[str, str], optional
        Where an instrument's files are, as ``"<security type>/<market>/<ticker>"``:
        ``{"SPY.ARCA" = "equity/usa/spy"}``. Instruments not listed follow the documented
        rule (``SPY.ARCA`` -> ``equity/usa/spy``, ``EUR/USD.OANDA`` -> ``forex/oanda/eurusd``,
        ``BTC/USD.COINBASE`` -> ``crypto/coinbase/btcusd``).
    extended_hours : bool, default False
        Keep US equity second and minute bars outside the regular session (09:30 to 16:00
        New York), as LEAN's ``extendedMarketHours``; by default they are left out, as LEAN
        leaves them out.
    timezones : dict[str, str], optional
        The data time zone of a market the plugin does not ship, or a correction:
        ``{"forex/fxcm" = "Etc/GMT+5"}`` (IANA names; LEAN's market-hours database has them
        as ``dataTimeZone``).

    """

    path: str
    symbols: dict[str, str] | None = None
    extended_hours: bool = False
    timezones: dict[str, str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, where in (self.symbols or {}).items():
            parts = where.split("/")
            if len(parts) != 3 or parts[0] not in SECURITY_TYPES or not all(parts):
                raise ValueError(
                    f"symbols: '{key}' = '{where}' must be '<security type>/<market>/<ticker>' "
                    f"with a security type of {', '.join(SECURITY_TYPES)} (e.g. 'equity/usa/spy')"
                )
        for market, tz in (self.timezones or {}).items():
            if market.count("/") != 1:
                raise ValueError(
                    f"timezones: key '{market}' must be '<security type>/<market>' "
                    "(e.g. 'forex/fxcm')"
                )
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"timezones: '{market}' = '{tz}' is not an IANA time zone (e.g. 'Etc/GMT+5')"
                ) from None
