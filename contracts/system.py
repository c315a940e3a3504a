"""The system contracts shipped with the node (``contracts/lua/*.lua``)."""

import importlib.resources

SYSTEM_CONTRACTS = ("iot_coin", "payment_channel", "data_market", "vesting")


def system_contract(name: str) -> str:
    """Lua source of the system contract ``name``."""
    if name not in SYSTEM_CONTRACTS:
        raise KeyError(f"unknown system contract {name!r}")
    return (importlib.resources.files(__package__) / "lua" / f"{name}.lua").read_text("utf-8")
