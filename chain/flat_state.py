"""The flat state: the latest value of every state key, for reads during execution.

It lives in LMDB's main (unnamed) database, beside the names of the named databases
(docs/protocol.md §10.2): every block rewrites that catalog page anyway (the chain database's
root moved), so while the state is small its changes ride on it instead of costing a page of a
database of their own. Keys are ``0xFE || state key`` for the consensus singletons, which change
every block (schedule, round, round votes, finality, pool, agent list), so they share one leaf
however large the state grows, and ``0xFF || state key`` for every other record. Database names
are printable text, so the two never mix.
"""

from chain.state import records

SYSTEM, RECORD = b"\xfe", b"\xff"
SYSTEM_KEYS = frozenset((records.SCHEDULE_KEY, records.ROUND_KEY, records.ROUND_VOTES_KEY,
                         records.FINALITY_KEY, records.POOL_KEY, records.AGENTS_KEY))


def flat_key(key):
    """Where state key ``key`` is kept in the main database."""
    return (SYSTEM if key in SYSTEM_KEYS else RECORD) + key


def reader(txn, db):
    """``read(key) -> value or None`` of the flat state inside ``txn``."""
    get = txn.get
    return lambda key: get(flat_key(key), db=db)


def write(txn, db, changes):
    """Apply ``changes`` (state key -> value, None to delete)."""
    puts = sorted((flat_key(k), v) for k, v in changes.items() if v is not None)
    if puts:
        txn.cursor(db=db).putmulti(puts)
    for key, value in changes.items():
        if value is None:
            txn.delete(flat_key(key), db=db)


def values(txn, db):
    """Every stored state value (in key order of the main database)."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(SYSTEM):
        return
    for key, value in cursor:
        if len(key) == 33 and key[:1] in (SYSTEM, RECORD):
            yield value
