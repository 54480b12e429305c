"""Configuration of the freqtrade source."""

from __future__ import annotations

from nautilus_backfill.config import SourceConfig

FORMATS = ("auto", "json", "jsongz", "feather", "parquet")


class FreqtradeSourceConfig(SourceConfig, frozen=True, kw_only=True):
    """
    A freqtrade data folder.

    Parameters
    ----------
    path : str
        The exchange's data folder, ``user_data/data/<exchange>`` (futures are read from its
        ``futures/`` subfolder), or ``user_data/data`` itself: then the exchange folder is the
        venue in lower case (``BINANCE`` -> ``binance``).
    format : str, default "auto"
        freqtrade's ``dataformat_ohlcv``: ``json``, ``jsongz``, ``feather`` or ``parquet``;
        ``auto`` finds the file by its extension (two formats of the same pair and
        timeframe are refused: set this key).
    pairs : dict[str, str], optional
        The freqtrade pair of an instrument id, as freqtrade writes it in its config:
        ``{"BTCUSDT-PERP.BINANCE" = "BTC/USDT:USDT"}``. A pair with ``:SETTLE`` is a futures
        pair. Instruments not listed follow the documented rule (``BTC/USDT`` -> ``BTC_USDT``,
        ``BTCUSDT`` -> ``BTC_USDT``, ``BTCUSDT-PERP`` -> ``BTC_USDT_USDT`` futures).

    """

    path: str
    format: str = "auto"
    pairs: dict[str, str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in FORMATS:
            raise ValueError(f"format: must be one of {', '.join(FORMATS)}, was '{self.format}'")
        for key, pair in (self.pairs or {}).items():
            base = pair.split(":", 1)[0]
            if base.count("/") != 1 or not all(base.split("/")):
                raise ValueError(
                    f"pairs: '{key}' = '{pair}' is not a freqtrade pair (use BASE/QUOTE for spot, "
                    "BASE/QUOTE:SETTLE for futures, e.g. 'BTC/USDT:USDT')"
                )
