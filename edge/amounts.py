"""SSP amounts between text and base units, exactly (no floats)."""

import re

_AMOUNT = re.compile(r"^([0-9]+)(?:\.([0-9]+))?$")  # ASCII digits only


def parse_amount(text, decimals):
    """``"12.5"`` SSP -> base units; raises ValueError saying what is wrong."""
    match = _AMOUNT.match(text.strip())
    if not match:
        raise ValueError(f"amount {text!r} is not a number like 12 or 0.5")
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > decimals:
        raise ValueError(f"amount {text!r} has more than {decimals} decimals")
    value = int(whole) * 10**decimals + int(frac.ljust(decimals, "0") or "0")
    if value >= 1 << 64:
        raise ValueError(f"amount {text!r} is too large")
    return value


def format_amount(base_units, decimals):
    """Base units -> ``"12.5"`` (no trailing zeros)."""
    whole, frac = divmod(int(base_units), 10**decimals)
    if not frac:
        return str(whole)
    return f"{whole}.{str(frac).rjust(decimals, '0').rstrip('0')}"
