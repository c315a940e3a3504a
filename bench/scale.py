"""Costs that should stay flat as a chain grows: round ends against voters, block apply against
accounts.

1. round end: ``V`` funded keys each stake and vote for one of four agents (real signed Vote
   transactions, applied in blocks of 5,000); then empty blocks are built and applied through
   two rounds, and the apply time of the blocks that start a round (where agents are paid and
   voter rewards accrue, docs/protocol.md §9) is compared with the others.
2. block apply: a genesis of ``A`` funded accounts, then blocks of 1,000 signed transfers to
   accounts spread over all of them; apply time per transaction (build excluded).
3. empty-block writes (``--idle-accounts``): a genesis of ``A`` funded accounts, 192 empty blocks
   (past the default prune depth and a pruning batch), then 64 more in a child process under
   ``strace``: bytes LMDB writes per empty block (``pwrite``/``writev`` of the data file), what an
   idle gateway's card takes as the state grows (bench/wear.py measures the devnet's).

Real LMDB in a temp folder, the ledger's own build/apply path (``tests/chainkit.py``). Prints a
table; the last line is one JSON object with ``round_end_ms_<V>_voters``,
``apply_us_per_tx_<A>_accounts`` and ``idle_bytes_per_block_<A>_accounts``.

    .venv/bin/python bench/scale.py [--voters 1000,10000,50000] [--accounts 10000,100000]
                                    [--idle-accounts 4,1000,10000]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chain.store import DEFAULT_PRUNE_DEPTH  # noqa: E402
from chain.tx import Stake, Transfer, Vote  # noqa: E402
from tests import chainkit  # noqa: E402
from tests.chainkit import COIN, TEST_PARAMS, TestChain  # noqa: E402

# Each key holds 100 SSP (a stake of 10 and fees; the kit's 1,000 each would need the whole
# supply at 1,000,000 accounts, and the genesis would not balance).
chainkit.FUNDED = 100 * COIN

PARAMS = TEST_PARAMS._replace(producers_per_round=4, standby_slots=0, max_missed_in_a_row=3,
                              max_votes=5, max_block_txs=5000)
CHUNK = 5000
TRANSFERS = 1000
IDLE_AGE, IDLE_BLOCKS = 192, 64
WRITTEN = re.compile(r"^\d+\s+(?:pwrite64|pwritev|writev)\(.*\)\s+=\s+(\d+)$")

def round_end(directory, voters):
    chain = TestChain(os.path.join(directory, f"voters-{voters}"), n_keys=voters, n_agents=4,
                      params=PARAMS, map_size=8 << 30)
    agents = [a.address for a in chain.agents]
    for payload in (lambda i: Stake(10 * COIN), lambda i: Vote((agents[i % 4],))):
        txs = [chain.tx(k, payload(i)) for i, k in enumerate(chain.keys)]
        for start in range(0, len(txs), CHUNK):
            chain.block(txs[start:start + CHUNK])
    starts, others = [], []
    for _ in range(3 * PARAMS.producers_per_round):
        slot = chain.next_slot()
        block, _ = chain.build([], slot)
        began = time.perf_counter()
        chain.ledger.apply_block(block)
        spent = time.perf_counter() - began
        (starts if block.header.height % PARAMS.producers_per_round == 0 else others).append(spent)
    chain.store.close()
    return 1000 * max(starts), 1000 * statistics.median(others)

def block_apply(directory, accounts):
    chain = TestChain(os.path.join(directory, f"accounts-{accounts}"), n_keys=accounts,
                      params=PARAMS, map_size=64 << 30)
    senders = chain.keys[:TRANSFERS]
    step = max(1, accounts // TRANSFERS)
    times = []
    for round_ in range(3):
        txs = [chain.tx(k, Transfer(chain.keys[(i * step + round_) % accounts].address, 1))
               for i, k in enumerate(senders)]
        block, rejected = chain.build(txs)
        assert not rejected
        began = time.perf_counter()
        chain.ledger.apply_block(block)
        times.append((time.perf_counter() - began) / len(txs))
    chain.store.close()
    return 1e6 * statistics.median(times)

def idle_chain(directory, accounts):
    return TestChain(os.path.join(directory, f"idle-{accounts}"), n_keys=accounts, params=PARAMS,
                     map_size=64 << 30, prune_depth=DEFAULT_PRUNE_DEPTH)


def empty_blocks(directory, accounts, count):
    chain = idle_chain(directory, accounts)
    for _ in range(count):
        chain.block()
    chain.store.close()


def idle_writes(directory, accounts):
    """Bytes written to LMDB per empty block on a chain of ``accounts`` funded accounts."""
    empty_blocks(directory, accounts, IDLE_AGE)
    trace = os.path.join(directory, f"idle-{accounts}.trace")
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=pwrite64,pwritev,writev", "-o", trace,
                    sys.executable, os.path.abspath(__file__), "--empty-blocks",
                    f"{directory},{accounts},{IDLE_BLOCKS}"], check=True)
    with open(trace) as f:
        written = sum(int(m.group(1)) for m in map(WRITTEN.match, f) if m)
    return written / IDLE_BLOCKS


def _count(n):
    """50000 -> 50k, 1000000 -> 1m."""
    for unit, size in (("m", 10**6), ("k", 1000)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voters", default="1000,10000,50000")
    ap.add_argument("--accounts", default="10000,100000",
                    help="1000000 works too: it needs ~3 GB of memory and minutes to set up")
    ap.add_argument("--idle-accounts", default="4,1000,10000")
    ap.add_argument("--empty-blocks", help=argparse.SUPPRESS)  # DIR,ACCOUNTS,COUNT (the child)
    args = ap.parse_args()
    if args.empty_blocks:
        directory, accounts, count = args.empty_blocks.rsplit(",", 2)
        return empty_blocks(directory, int(accounts), int(count))
    out, rows = {}, []
    with tempfile.TemporaryDirectory(prefix="smartshare-scale-") as d:
        for v in (int(x) for x in args.voters.split(",") if x):
            began = time.perf_counter()
            end_ms, other_ms = round_end(d, v)
            rows.append((f"round end, {v:,} voters (ms)",
                         f"{end_ms:.2f} (other blocks {other_ms:.2f}; set up "
                         f"{time.perf_counter() - began:.0f} s)"))
            out[f"round_end_ms_{_count(v)}_voters"] = round(end_ms, 2)
        for a in (int(x) for x in args.accounts.split(",") if x):
            began = time.perf_counter()
            per_tx = block_apply(d, a)
            rows.append((f"block apply, {a:,} accounts (us per transfer)",
                         f"{per_tx:.0f} (set up {time.perf_counter() - began:.0f} s)"))
            out[f"apply_us_per_tx_{_count(a)}_accounts"] = round(per_tx, 1)
        for a in (int(x) for x in args.idle_accounts.split(",") if x):
            per_block = idle_writes(d, a)
            rows.append((f"empty block, {a:,} accounts (bytes written)",
                         f"{per_block:,.0f} ({per_block * 86400 / 1e9:.2f} GB a day at 1 s slots, "
                         f"{per_block * 28800 / 1e9:.2f} at 3 s)"))
            out[f"idle_bytes_per_block_{_count(a)}_accounts"] = round(per_block)
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(json.dumps(out))

if __name__ == "__main__":
    main()
