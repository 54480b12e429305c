"""What the plugin needs from LEAN's reference data, vendored with where it came from."""

from __future__ import annotations

# Data time zones: the `dataTimeZone` of LEAN's market-hours database
# (QuantConnect/Lean, Data/market-hours/market-hours-database.json), entry by entry:
#   "Equity-usa-[*]"       America/New_York
#   "Forex-oanda-[*]"      UTC   (LEAN docs, Data Format > Forex and CFD: "the data time zone of
#   "Cfd-oanda-[*]"        UTC    the oanda market is UTC")
#   "Crypto-coinbase-[*]"  UTC   (LEAN docs, Data Format > Crypto: "The data time zone is UTC")
# Other markets: set `timezones` in the source config.
DATA_TIME_ZONES = {
    "equity/usa": "America/New_York",
    "forex/oanda": "UTC",
    "cfd/oanda": "UTC",
    "crypto/coinbase": "UTC",
}

# Regular sessions, in ms since local midnight: the "market" segment of the same database's
# "Equity-usa-[*]" entry (09:30:00 to 16:00:00, Monday to Friday). LEAN subscriptions leave
# the "premarket"/"postmarket" segments out unless `extendedMarketHours` is set.
REGULAR_HOURS = {"equity/usa": (34_200_000, 57_600_000)}

# The rule from a NautilusTrader venue to LEAN's security type and market folder. OANDA
# serves forex and CFDs under the same venue: the files decide (see `lean_candidates`).
US_EQUITY_VENUES = frozenset(
    {
        "ARCA",
        "NASDAQ",
        "NYSE",
        "AMEX",
        "BATS",
        "IEX",
        "XNAS",
        "XNYS",
        "ARCX",
        "XASE",
        "BATY",
        "EDGX",
        "SMART",
    }
)
CRYPTO_VENUES = {"COINBASE": "coinbase", "GDAX": "coinbase"}
OANDA_VENUES = frozenset({"OANDA"})

# LEAN resolutions by bar length, and whether their files hold one day each.
RESOLUTIONS = {
    1_000_000_000: ("second", True),
    60_000_000_000: ("minute", True),
    3_600_000_000_000: ("hour", False),
    86_400_000_000_000: ("daily", False),
}
