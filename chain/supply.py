"""Where the fixed supply is (``GET /v1/supply``, ``smartshare token supply``).

``total`` is the genesis supply; each pool reports its genesis amount and what it still holds
(the reward and participation pools for the ``rewards`` pool, its vesting contract's balance
for a ``vesting`` pool); ``locked`` is what has not vested at the head's height (a pure function of genesis and
height), ``releasable`` what has vested but is still in a vesting contract, and ``circulating``
everything else: total − the vesting contracts' balances − the reward and participation
pools.
"""

from chain import participation
from chain.genesis import OPEN, REWARDS, VESTING
from chain.vesting import locked, vesting_address


def supply_report(view, genesis, height):
    """The supply at ``height`` on ``view`` (the state after that block), amounts as ints."""
    pools, held_total, locked_total = [], 0, 0
    for index, pool in enumerate(genesis.pools):
        entry = {"name": pool.name, "kind": pool.kind_name, "amount": pool.amount}
        if pool.kind == REWARDS:
            entry["held"] = view.pool() + participation.held(view)
            held_total += entry["held"]
        elif pool.kind == VESTING:
            entry["contract"] = vesting_address(pool.name)
            entry["held"] = view.account(entry["contract"]).balance
            entry["locked"] = locked(pool, genesis.vesting_grants(index), height)
            entry["cliff_height"], entry["linear_blocks"] = pool.cliff_blocks, pool.linear_blocks
            held_total += entry["held"]
            locked_total += entry["locked"]
        else:
            assert pool.kind == OPEN
        pools.append(entry)
    return {"height": height, "total": genesis.total_supply, "circulating":
            genesis.total_supply - held_total, "locked": locked_total,
            "releasable": held_total - locked_total - view.pool() - participation.held(view),
            "reward_pool": view.pool(), "participation_pool": participation.held(view),
            "pools": pools}
