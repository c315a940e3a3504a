"""Read-only contract calls on a light node, every value they read proven (docs/protocol.md §13.7).

A light node holds no state, so it runs the call here, in the same VM and with the same gas limit
as a full node, against the state of its last irreversible block, reading through a view whose
values all come with state proofs checked against that block's root. The VM cannot wait for the
network (its wall-clock backstop would count the wait), so a call that reads a value not proven
yet is thrown away, the missing values are fetched (one GetState for all of them) and the call
runs again from the start; the VM is deterministic, so the last run, which read only proven
values, is exactly what a full node answers at that block. Code chunks and the contract record are
fetched up front. Each round proves at least one new value, and a call's reads are bounded by its
gas, so the rounds are too; ``MAX_ROUNDS`` caps them all the same.
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from chain import calls
from chain.light import LightError
from chain.p2p.light import MAX_KEYS
from chain.state import records
from chain.state.view import StateView

PREFETCH_CHUNKS = 8     # compiled code chunks asked for with the contract record (32 kB)
MAX_ROUNDS = 64


class QueryTooWide(LightError):
    """The call kept reading values not proven yet for ``MAX_ROUNDS`` rounds."""


class ProvenQueries:
    """Contract queries on proven state, one at a time on a thread of their own (the VM must
    not block the event loop); ``read(header, keys)`` is an async function returning the proven
    values of ``keys`` in the state of ``header`` (``LightSync.read``)."""

    def __init__(self, read, chain_id, gas_limit):
        self.read, self.chain_id, self.gas_limit = read, chain_id, gas_limit
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="light-query")

    async def call(self, header, contract, method, args):
        """The VM's Result of ``method(*args)`` on ``contract`` in the state after ``header``;
        LookupError when there is no contract there (proven absent)."""
        known = {}
        wanted = [records.contract_key(contract)]
        wanted += [records.code_key(contract, calls.COMPILED_CHUNKS + i)
                   for i in range(PREFETCH_CHUNKS)]
        loop = asyncio.get_running_loop()
        for _ in range(MAX_ROUNDS):
            await self._prove(header, wanted, known)
            missing = []
            result = await loop.run_in_executor(self._pool, self._run, header, contract, method,
                                                args, known, missing)
            if not missing:
                return result
            wanted = list(dict.fromkeys(missing))
        raise QueryTooWide("query_too_wide", f"{method} kept reading new state for "
                           f"{MAX_ROUNDS} rounds of proofs")

    async def _prove(self, header, keys, known):
        for start in range(0, len(keys), MAX_KEYS):
            known.update(await self.read(header, keys[start:start + MAX_KEYS]))

    def _run(self, header, contract, method, args, known, missing):
        def read(key):
            if key in known:
                return known[key]
            missing.append(key)
            return None
        try:
            return calls.query(StateView(read), self.chain_id, contract, method, args,
                               header.height, header.timestamp_ms, self.gas_limit)
        except LookupError:
            if missing:
                return None  # the contract record itself was not proven yet
            raise

    def close(self):
        self._pool.shutdown(wait=False)
