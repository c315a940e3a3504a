"""Hypothesis strategies for consensus objects (as the plain tuples of edge._fast)."""

from hypothesis import strategies as st

from edge._fast import codec_py as wire

U64 = st.integers(0, 2**64 - 1)
chain_ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=32)
hashes = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20)
signatures = st.binary(min_size=64, max_size=64)
short_text = lambda n: st.text(max_size=n).filter(lambda s: len(s.encode()) <= n)  # noqa: E731
address_sets = st.lists(addresses, max_size=wire.MAX_VOTES, unique=True).map(
    lambda xs: tuple(sorted(xs)))

payloads = st.one_of(
    st.tuples(st.just(wire.KIND_TRANSFER),
              st.tuples(addresses, U64, st.binary(max_size=wire.MAX_MEMO))),
    st.tuples(st.just(wire.KIND_STAKE), st.tuples(U64)),
    st.tuples(st.just(wire.KIND_UNSTAKE), st.tuples(U64)),
    st.tuples(st.just(wire.KIND_VOTE), st.tuples(address_sets)),
    st.tuples(st.just(wire.KIND_REGISTER_AGENT),
              st.tuples(short_text(wire.MAX_NAME), short_text(wire.MAX_ENDPOINT), hashes, U64,
                        hashes, signatures)),
    st.tuples(st.just(wire.KIND_ROTATE_PRODUCER), st.tuples(hashes, U64, hashes, signatures)),
    st.tuples(st.just(wire.KIND_HEAVY_RESULT), st.tuples(hashes, st.integers(0, 255), U64, hashes)),
    st.tuples(st.just(wire.KIND_UNREGISTER_AGENT), st.just(())),
    st.tuples(st.just(wire.KIND_UNJAIL), st.just(())),
    st.tuples(st.just(wire.KIND_EVIDENCE),
              st.tuples(st.binary(max_size=wire.MAX_EVIDENCE_HEADER),
                        st.binary(max_size=wire.MAX_EVIDENCE_HEADER))),
    st.tuples(st.just(wire.KIND_DEPLOY),
              st.tuples(st.binary(max_size=300), st.binary(max_size=60), U64)),
    st.tuples(st.just(wire.KIND_CALL),
              st.tuples(addresses, short_text(wire.MAX_METHOD), st.binary(max_size=60), U64, U64)),
)


@st.composite
def txs(draw):
    kind, payload = draw(payloads)
    return (kind, draw(chain_ids), draw(hashes), draw(U64), draw(U64), payload, draw(signatures))


headers = st.tuples(st.just(wire.HEADER_VERSION), U64, hashes, U64, U64, hashes, hashes,
                    st.one_of(st.none(), hashes), U64, U64, hashes, hashes, hashes, hashes,
                    signatures)
vote_blobs = st.lists(st.binary(max_size=wire.MAX_VOTE_BYTES), max_size=6)

unbonding = st.lists(st.tuples(U64, U64), max_size=wire.MAX_UNBONDING).map(
    lambda xs: tuple(sorted(xs, key=lambda e: e[1])))
accounts = st.tuples(U64, U64, U64, address_sets, unbonding)
frames = st.tuples(st.just(wire.FRAME_VERSION), st.sampled_from(wire.FRAME_KINDS),
                   st.binary(min_size=8, max_size=8), U64, U64,
                   short_text(wire.MAX_FRAME_PAYLOAD), signatures)
