"""``smartshare token supply``: where the fixed 1,000,000,000 SSP are (``GET /v1/supply``):
circulating, still locked in vesting contracts, left in the reward pools, and each genesis
pool."""

from edge.amounts import format_amount
from edge.cli_base import node_status


def add_parser(token, common):
    """``supply`` in the ``token`` command group (edge/cli_contract.py)."""
    p = token.add_parser("supply", parents=[common],
                         help="total, circulating and locked SSP, and each genesis pool")
    p.set_defaults(func=cmd_supply)


def cmd_supply(args):
    client, status = node_status(args)
    doc = client.get("/v1/supply")
    decimals = status["decimals"]

    def ssp(value):
        return f"{format_amount(int(value), decimals):>20} SSP"
    lines = [f"supply at height {doc['height']}",
             f"  total        {ssp(doc['total'])}", f"  circulating  {ssp(doc['circulating'])}",
             f"  locked       {ssp(doc['locked'])}  (not vested yet)",
             f"  releasable   {ssp(doc['releasable'])}  (vested, not released yet)"]
    for key, label in (("reward_pool", "reward pool"),
                       ("participation_pool", "participation pool")):
        if key in doc:
            lines.append(f"  {label:<12} {ssp(doc[key])}")
    lines.append("pools:")
    for pool in doc["pools"]:
        line = f"  {pool['name']:<18} {pool['kind']:<8} {ssp(pool['amount'])}"
        if "held" in pool:
            line += f", still held {format_amount(int(pool['held']), decimals)}"
        if "locked" in pool:
            line += (f", locked {format_amount(int(pool['locked']), decimals)} (cliff at height "
                     f"{pool['cliff_height']}, then "
                     + (f"linear over {pool['linear_blocks']} blocks)" if pool["linear_blocks"]
                        else "all at once)"))
        lines.append(line)
    return doc, "\n".join(lines)
