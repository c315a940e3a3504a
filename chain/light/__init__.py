"""The light client: following the chain from a checkpoint without executing it.

A light node keeps headers, never state. It trusts a header's state root once a quorum of the
producer set that the chain's own finality rule names has signed the round checkpoint above it
(``finality``: compact finality proofs; ``tracker``: which producer sets count for which link),
follows the head by checking every header's producer against the round schedule it recomputes
(``follow``), and checks every value it serves against a state root it already trusts
(docs/protocol.md §13.7). ``serve`` is the full node's side: what it stores and answers so that
light nodes can do all this. Nothing here trusts a peer's word.
"""


class LightError(Exception):
    """What a peer sent does not verify (or cannot be checked); ``reason`` is a stable code
    for peer scoring (docs/protocol.md §13.7)."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason
