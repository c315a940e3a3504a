"""Paths in the ordered Merkle tree of a block's transactions and receipts (docs/protocol.md §2).

The tree pairs neighbours level by level and promotes an odd last node unchanged. The path of
item ``index`` among ``count`` lists the sibling at every level where the item's node has one,
bottom first; a level where it is the promoted last node contributes nothing. Whether each
sibling sits left or right follows from ``index`` and ``count``, so the path is hashes only.
"""

from edge import _fast
from edge._fast.hashing_py import TAG_MERKLE_LEAF, merkle_node


def merkle_path(items, index):
    """The sibling hashes from leaf ``index`` of ``items`` up to the root."""
    if not 0 <= index < len(items):
        raise IndexError(f"item {index} of {len(items)}")
    level = _fast.hash_batch(TAG_MERKLE_LEAF, list(items))
    path = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        level = [merkle_node(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
        index //= 2
    return path


def merkle_path_root(item, index, count, path):
    """The root that ``path`` leads to from ``item`` at ``index`` of ``count``; None when the
    path has the wrong length for that position."""
    if not 0 <= index < count:
        return None
    node = _fast.tagged_hash(TAG_MERKLE_LEAF, item)
    path = list(path)
    while count > 1:
        if index ^ 1 < count:
            if not path:
                return None
            sibling = path.pop(0)
            node = merkle_node(sibling, node) if index & 1 else merkle_node(node, sibling)
        index, count = index // 2, (count + 1) // 2
    return node if not path else None
