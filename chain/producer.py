"""The node's side of block production: its signing key, reveal chains and vote watermark.

A ``BlockSigner`` never signs two conflicting finality votes: it remembers the highest source and
target rounds it voted for in a small file beside its key, written to disk before the block
carrying the vote is signed. A signer whose file is missing (a new gateway for an old key, a
wiped card) does not vote until it has seen its own latest vote on the chain, or until the
evidence window has passed, so it can never double-vote by accident (docs/protocol.md §13).
"""

import json
import os

from chain.dpos.reveal import RENEW_BELOW, RevealChain
from chain.votes import make_vote


class ProducerError(Exception):
    """The signer cannot make a block (its reveal chain does not match the chain's record)."""


class BlockSigner:
    """Signs this node's blocks; ``watermark_path`` None keeps the watermark in memory (tests).
    ``chains`` (epoch -> RevealChain) may supply the reveal chains, e.g. from a cache."""

    def __init__(self, keypair, watermark_path=None, chains=None):
        self.keypair = keypair
        self.pubkey = keypair.pubkey
        self.address = keypair.address
        self.path = watermark_path
        self._chains = {}
        self._chain_source = chains
        self.last_source = self.last_target = 0
        self.recovering = False
        self.recover_until_height = None  # set once the node knows the head (recovery only)
        self.recovery_end = None  # why the recovery ended, for the log
        if watermark_path is not None:
            self._load()

    # -- signing and reveals --------------------------------------------------------------------

    def sign(self, chain_id, object_hash):
        return self.keypair.sign(chain_id, object_hash)

    def reveal_for(self, record):
        """``(reveal, renewal)`` for this key's next block, given its producer record: the
        next value of the committed chain, and a new chain's commitment when fewer than
        1/8 of its values remain (None otherwise)."""
        chain = self._chain(record.epoch)
        found = chain.reveal_after(record.commit)
        if found is None:
            raise ProducerError(f"the chain's commitment for this key is not on its reveal chain "
                                f"{record.epoch}: was the key's owner record set by another "
                                "tool?")
        reveal, remaining = found
        renewal = self._chain(record.epoch + 1).commit if remaining < RENEW_BELOW else None
        return reveal, renewal

    def commitment(self, epoch=0):
        """The first value of reveal chain ``epoch`` (what registration commits to)."""
        return self._chain(epoch).commit

    def _chain(self, epoch):
        if self._chain_source is not None:
            return self._chain_source(epoch)
        if epoch not in self._chains:
            self._chains = {e: c for e, c in self._chains.items() if e >= epoch - 1}
            self._chains[epoch] = RevealChain(self.keypair.reveal_secret(epoch))
        return self._chains[epoch]

    # -- the vote watermark ---------------------------------------------------------------------

    def may_vote(self, vote):
        """True when ``vote`` (source_round, source_hash, target_round, target_hash) can
        conflict with no vote this key ever signed."""
        if self.recovering:
            return False
        source_round, _, target_round, _ = vote
        return target_round > self.last_target and source_round >= self.last_source

    def vote(self, link, chain_id):
        """This key's signed vote for ``link``, recorded durably before it is signed."""
        self.last_source = max(self.last_source, link[0])
        self.last_target = max(self.last_target, link[2])
        self._save()
        return make_vote(self, link, chain_id)

    def observe(self, vote, head_height, window):
        """A vote signed by this key that this process did not make (from before a restart,
        seen in a block or from a peer) raises the watermark. While recovering, seeing its
        own vote for the round the recovery started in (or later) ends the recovery."""
        if vote.producer != self.pubkey:
            return
        self.last_source = max(self.last_source, vote.source_round)
        self.last_target = max(self.last_target, vote.target_round)
        if self.recover_until_height is not None:  # the window starts when it first may produce
            self.check_recovery(head_height, window, own_vote_round=vote.target_round)

    def check_recovery(self, head_height, window, current_round=None, own_vote_round=None):
        """End the recovery when the head is ``window`` blocks past the head this node held when
        it first had a slot while caught up with the network (``head_height`` then), or when
        this key's own vote for that round or a later one has been seen: a vote signed before
        the restart targets a round no later than that one, so the watermark then covers it."""
        if not self.recovering:
            return
        if self.recover_until_height is None:
            self.recover_until_height = head_height + window
            self._start_round = current_round
        recent = (own_vote_round is not None and self._start_round is not None
                  and own_vote_round >= self._start_round)
        if head_height >= self.recover_until_height or recent:
            self.recovering = False
            self.recovery_end = (f"saw its own vote for round {own_vote_round} (recovery began in "
                                 f"round {self._start_round})" if recent else
                                 f"head {head_height} is the evidence window past "
                                 f"{self.recover_until_height - window}")
            self._save()

    def _load(self):
        try:
            with open(self.path) as f:
                doc = json.load(f)
            self.last_source, self.last_target = int(doc["source_round"]), int(doc["target_round"])
        except FileNotFoundError:
            self.recovering = True
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProducerError(f"vote watermark {self.path} is damaged ({exc}); move it aside "
                                "and restart: the node will wait out the evidence window "
                                "before it votes again") from None

    def _save(self):
        if self.path is None:
            return
        write_watermark(self.path, self.last_source, self.last_target)


def write_watermark(path, source_round=0, target_round=0):
    """Write a vote watermark file whole (0600, fsync, rename): a new key starts at zero."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"source_round": source_round, "target_round": target_round}, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def watermark_path(votes_dir, pubkey):
    """Where the vote watermark of producer key ``pubkey`` lives."""
    return os.path.join(votes_dir, f"{pubkey.hex()}.json")


def start_watermark(votes_dir, pubkey):
    """Record that a freshly generated producer key has never voted (its first watermark)."""
    os.makedirs(votes_dir, mode=0o700, exist_ok=True)
    write_watermark(watermark_path(votes_dir, pubkey))
