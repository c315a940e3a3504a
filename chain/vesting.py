"""Vesting pools (docs/protocol.md §8): genesis puts each vesting pool's grants into a
``vesting.lua`` contract of its own, at an address derived from the pool's name, funded with the
pool's amount. The contract's holder calls ``release()`` to take what has vested; until then the
tokens are not in the holder's balance, so no transfer can move them.

The same vesting rule, in Python, gives the supply report what is still locked at a height.
"""

from chain import calls
from chain.crypto import hash_of
from chain.state.records import Account
from contracts.system import system_contract
from contracts.values import encode_value

TAG_VESTING_ADDRESS = b"ss/vesting-address"
CODE = system_contract("vesting").encode()


def vesting_address(pool_name):
    """The address of the contract holding pool ``pool_name``'s grants."""
    return hash_of(TAG_VESTING_ADDRESS, pool_name.encode())[:20]


def vested(total, pool, height):
    """Base units of a ``total`` grant of ``pool`` vested at ``height`` (vesting.lua's rule)."""
    if height < pool.cliff_blocks:
        return 0
    elapsed = height - pool.cliff_blocks
    if elapsed >= pool.linear_blocks:
        return total
    return total * elapsed // pool.linear_blocks


def locked(pool, grants, height):
    """What of ``grants`` (``(address, amount)``) has not vested at ``height``."""
    return sum(amount - vested(amount, pool, height) for _, amount in grants)


def create(view, pool, grants):
    """Deploy ``pool``'s vesting contract into the genesis ``view``: its code (compiled by the
    pinned VM), its schedule and grants, and a balance of the whole pool."""
    address = vesting_address(pool.name)
    calls.store_code(view, address, bytes(20), CODE, 0)
    calls.store_compiled(view, address, calls.vm().compile(CODE.decode()))
    state = calls.ContractState(view)
    state.storage_set(address, b"s", encode_value({"cliff": pool.cliff_blocks,
                                                   "linear": pool.linear_blocks}))
    for holder, amount in grants:
        state.storage_set(address, b"g" + holder, encode_value({"total": amount, "released": 0}))
    view.set_account(address, Account(balance=pool.amount))
