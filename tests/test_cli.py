"""The ``smartshare`` command line as a user runs it: real processes against a real devnet node.

Every subcommand in plain and ``--json`` form with its real effects, and the error paths: a
non-zero exit, exactly one line on stderr (one JSON object with ``--json``), no traceback, and a
message that says what is wrong. One node serves the whole module.
"""

import json
import os
import re
import stat
import time

import pytest

from chain.address import _CHARSET, decode_address, encode_address
from chain.block import STATUS_OK
from tests.nodeproc import NodeHome, run_cli

pytestmark = pytest.mark.slow  # a node process and a CLI process per command

SSP = 10**8
HEX64 = re.compile(r"^[0-9a-f]{64}$")
ADDRESS = re.compile(r"^ssp1[02-9ac-hj-np-z]{38}$")


# -- fixtures and helpers -------------------------------------------------------------------------

class Net:
    """The module's running devnet: its home, node process and API client."""

    def __init__(self, home, node):
        self.home, self.node = home, node
        self.api = home.client()

    def cli(self, *args, **kwargs):
        return self.home.cli(*args, **kwargs)

    def account(self, address):
        return self.api.get(f"/v1/accounts/{address}")

    def balance(self, address):
        return int(self.account(address)["balance"])


@pytest.fixture(scope="module")
def net(module_node_factory):
    home = module_node_factory.home("main")
    node = module_node_factory.node(home)
    node.wait_height(1)
    return Net(home, node)


@pytest.fixture(scope="module")
def stopped_home(module_node_factory):
    """A home whose node ran, was stopped with SIGTERM, and is down."""
    home = module_node_factory.home("stopped")
    node = module_node_factory.node(home)
    node.wait_height(1)
    assert node.stop() == 0, f"node did not exit cleanly on SIGTERM:\n{node.log_tail()}"
    assert "node stopped" in node.log_tail()
    return home


def new_wallet(net, name):
    result = net.cli("wallet", "new", "--name", name, "--json", check=True)
    return result.json()["address"]


def mode_of(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def mistype(address, position=12):
    """``address`` with one character of its data part replaced by another valid one."""
    old = address[position]
    new = _CHARSET[(_CHARSET.index(old) + 1) % len(_CHARSET)]
    return address[:position] + new + address[position + 1:]


def assert_error(result, *needles, code=None, json_mode=False):
    """A failed command: exit 1, nothing on stdout, one stderr line naming the problem."""
    text = str(result)
    assert result.returncode == 1, f"expected exit status 1:\n{text}"
    assert "Traceback" not in result.output, text
    assert result.stdout == "", f"an error must print nothing on stdout:\n{text}"
    lines = result.stderr_lines()
    assert len(lines) == 1, f"expected exactly one line on stderr:\n{text}"
    if json_mode:
        try:
            doc = json.loads(lines[0])
        except ValueError:
            raise AssertionError(f"--json error is not one JSON line:\n{text}") from None
        assert set(doc) == {"error", "code"}, text
        assert isinstance(doc["error"], str) and doc["error"], text
        if code is not None:
            assert doc["code"] == code, text
        message = doc["error"]
    else:
        assert lines[0].startswith("error: "), text
        message = lines[0]
    for needle in needles:
        assert needle.lower() in message.lower(), f"{needle!r} missing from the message:\n{text}"
    return message


def flags(json_mode):
    return ["--json"] if json_mode else []


JSON_OR_PLAIN = pytest.mark.parametrize("json_mode", [False, True], ids=["plain", "json"])


# -- init -----------------------------------------------------------------------------------------

INIT_KEYS = {"home", "chain_id", "genesis_hash", "node_address", "agent_address", "wallet",
             "wallet_address", "api"}


def assert_key_files_private(home):
    for path in (os.path.join(home, "node_key.json"), os.path.join(home, "wallets", "default.json")):
        assert mode_of(path) == 0o600, f"{path} has mode {mode_of(path):o}"


def seeds_of(home):
    out = []
    for path in (os.path.join(home, "node_key.json"), os.path.join(home, "wallets", "default.json")):
        with open(path) as f:
            out.append(json.load(f)["seed"])
    return out


def test_init_plain(tmp_path):
    home = str(tmp_path / "h")
    result = run_cli("--home", home, "init", "--devnet", "--chain-id", "test-chain-1",
                     "--api-port", "18999", check=True)
    out = result.stdout
    assert result.stderr == ""
    assert f"Initialised devnet test-chain-1 in {home}" in out
    assert "http://127.0.0.1:18999" in out
    assert f"smartshare --home {home} node run" in out
    wallet = re.search(r"wallet 'default' (ssp1\S+)", out).group(1)
    node_address = re.search(r"node \(producer\)\s+(ssp1\S+)", out).group(1)
    decode_address(wallet), decode_address(node_address)
    for name in ("config.toml", "genesis.json", "node_key.json", "wallets/default.json"):
        assert os.path.isfile(os.path.join(home, name)), name
    assert_key_files_private(home)
    for seed in seeds_of(home):
        assert seed not in result.output
    with open(os.path.join(home, "genesis.json")) as f:
        genesis = json.load(f)
    assert genesis["chain_id"] == "test-chain-1"
    assert wallet in [a["address"] for a in genesis["allocations"]]
    # `wallet address` needs no node: it reads the key file init wrote.
    assert run_cli("--home", home, "wallet", "address", check=True).stdout.strip() == wallet


def test_init_json_home_after_subcommand(tmp_path):
    home = str(tmp_path / "h")
    port = 18998
    result = run_cli("init", "--devnet", "--api-port", port, "--json", "--home", home, check=True)
    info = result.json()
    assert set(info) == INIT_KEYS
    assert info["home"] == home
    assert re.match(r"^ss-devnet-[0-9a-f]{6}$", info["chain_id"])
    assert HEX64.match(info["genesis_hash"])
    assert info["api"] == f"http://127.0.0.1:{port}"
    assert info["wallet"] == "default"
    assert ADDRESS.match(info["wallet_address"]) and ADDRESS.match(info["node_address"])
    assert info["wallet_address"] != info["node_address"]
    assert_key_files_private(home)
    for seed in seeds_of(home):
        assert seed not in result.output
    address = run_cli("wallet", "address", "--json", "--home", home, check=True).json()
    assert address == {"name": "default", "address": info["wallet_address"]}


@JSON_OR_PLAIN
def test_init_twice_refused(tmp_path, json_mode):
    home = str(tmp_path / "h")
    first = run_cli("--home", home, "init", "--devnet", "--json", check=True).json()
    with open(os.path.join(home, "genesis.json")) as f:
        genesis_before = f.read()
    result = run_cli("--home", home, "init", "--devnet", *flags(json_mode))
    assert_error(result, "already holds a node", home, code="exists", json_mode=json_mode)
    with open(os.path.join(home, "genesis.json")) as f:
        assert f.read() == genesis_before, "a refused init must not touch the existing home"
    address = run_cli("--home", home, "wallet", "address", check=True).stdout.strip()
    assert address == first["wallet_address"]


# -- node run and status --------------------------------------------------------------------------

STATUS_KEYS = {"chain_id", "genesis_hash", "height", "head_hash", "state_root", "slot",
               "timestamp_ms", "mempool", "node_address", "node_pubkey", "role",
               "implementation", "version", "decimals", "params"}


def test_status_plain(net):
    result = net.cli("status", check=True)
    out = result.stdout
    assert re.search(rf"^chain\s+{net.home.chain_id}$", out, re.M), out
    height = int(re.search(r"^height\s+(\d+)\s+\(slot (\d+)\)$", out, re.M).group(1))
    assert height >= 1
    assert re.search(r"^head\s+[0-9a-f]{64}$", out, re.M), out
    assert re.search(r"^state\s+[0-9a-f]{64}$", out, re.M), out
    assert re.search(r"^mempool\s+\d+ pending$", out, re.M), out
    assert f"node     {net.home.info['node_address']} (agent, " in out


@pytest.mark.parametrize("order", ["home-first", "home-last", "json-first"])
def test_status_json_and_home_position(net, order):
    home = net.home.path
    argv = {"home-first": ["--home", home, "status", "--json"],
            "home-last": ["status", "--json", "--home", home],
            "json-first": ["--json", "status", "--home", home]}[order]
    status = run_cli(*argv, check=True).json()
    assert STATUS_KEYS <= set(status)
    assert status["chain_id"] == net.home.chain_id
    assert status["genesis_hash"] == net.home.info["genesis_hash"]
    assert status["node_address"] == net.home.info["node_address"]
    assert status["height"] >= 1 and HEX64.match(status["head_hash"])
    assert status["decimals"] == 8
    assert {"min_fee", "fee_per_byte", "slot_ms", "max_tx_bytes"} <= set(status["params"])


def test_token_supply(net):
    doc = net.cli("token", "supply", "--json", check=True).json()
    coin = 10**8
    assert int(doc["total"]) == 10**9 * coin and int(doc["locked"]) == 150_000_000 * coin
    assert sum(int(doc[k]) for k in ("circulating", "locked", "releasable", "reward_pool",
                                     "participation_pool")) == int(doc["total"])
    assert int(doc["participation_pool"]) == 50_000_000 * coin
    pools = {p["name"]: p for p in doc["pools"]}
    assert set(pools) == {"private_placement", "foundation", "team", "ecological"}
    assert sum(int(p["amount"]) for p in pools.values()) == int(doc["total"])
    assert pools["team"]["kind"] == "vesting" and pools["team"]["contract"].startswith("ssp1")
    assert pools["team"]["cliff_height"] == 365 * 86_400
    text = net.cli("token", "supply", check=True).stdout
    assert re.search(r"^  locked\s+150000000 SSP", text, re.M), text
    assert "team" in text and "all at once" in text


def test_node_run_twice_on_one_home_refused(net):
    result = net.cli("node", "run", timeout=60)
    assert_error(result, "another node is already running")
    result = net.cli("node", "run", "--json", timeout=60)
    assert_error(result, "another node is already running", code="node", json_mode=True)
    assert net.node.alive, "the running node must survive a refused second start"


@JSON_OR_PLAIN
def test_node_run_with_api_port_taken_refused(net, tmp_path, json_mode):
    other = NodeHome.init(tmp_path / "other", api_port=net.home.api_port)
    result = other.cli("node", "run", *flags(json_mode), timeout=60)
    assert_error(result, "cannot serve the API", net.home.api_url, code="node",
                 json_mode=json_mode)
    assert net.node.alive


@JSON_OR_PLAIN
def test_node_run_without_home_refused(tmp_path, json_mode):
    home = str(tmp_path / "nothing")
    result = run_cli("--home", home, "node", "run", *flags(json_mode), timeout=60)
    assert_error(result, "no node is set up", home, code="ConfigError", json_mode=json_mode)


# -- wallet new / address -------------------------------------------------------------------------

def test_wallet_new_and_address(net):
    result = net.cli("wallet", "new", "--name", "carol", check=True)
    match = re.search(r"^new wallet 'carol': (ssp1\S+)$", result.stdout, re.M)
    assert match, result
    carol = match.group(1)
    key_file = net.home.wallet_file("carol")
    assert f"key file {key_file} (mode 0600" in result.stdout
    assert mode_of(key_file) == 0o600

    doc = net.cli("wallet", "new", "--name", "dave", "--json", check=True).json()
    assert set(doc) == {"name", "address", "key_file"}
    assert doc["name"] == "dave" and doc["key_file"] == net.home.wallet_file("dave")
    assert mode_of(doc["key_file"]) == 0o600
    assert doc["address"] != carol
    with open(doc["key_file"]) as f:
        seed = json.load(f)["seed"]
    assert seed not in result.output

    assert net.cli("wallet", "address", "--name", "carol", check=True).stdout == carol + "\n"
    assert net.cli("wallet", "address", "--name", "dave", "--json", check=True).json() == \
        {"name": "dave", "address": doc["address"]}
    assert net.cli("wallet", "address", check=True).stdout.strip() == net.home.wallet_address


@JSON_OR_PLAIN
def test_wallet_new_existing_name_refused(net, json_mode):
    name = f"twice-{int(json_mode)}"
    new_wallet(net, name)
    with open(net.home.wallet_file(name)) as f:
        before = f.read()
    result = net.cli("wallet", "new", "--name", name, *flags(json_mode))
    assert_error(result, "already exists", name, code="exists", json_mode=json_mode)
    with open(net.home.wallet_file(name)) as f:
        assert f.read() == before, "a refused wallet new must keep the existing key"


@JSON_OR_PLAIN
def test_wallet_bad_name_refused(net, json_mode):
    result = net.cli("wallet", "new", "--name", "../escape", *flags(json_mode))
    assert_error(result, "wallet name", json_mode=json_mode)
    assert not os.path.exists(os.path.join(net.home.path, "escape.json"))


# -- balance, transfer, history -------------------------------------------------------------------

def test_transfer_wait_json_moves_exact_amounts(net):
    bob = new_wallet(net, "bob")
    sender = net.home.wallet_address
    before = net.balance(sender)
    assert net.balance(bob) == 0

    result = net.cli("wallet", "transfer", bob, "12.5", "--wait", "--json", check=True)
    sent = result.json()
    assert {"id", "from", "to", "amount", "fee", "nonce", "status", "height"} <= set(sent)
    assert sent["status"] == "committed"
    assert sent["from"] == sender and sent["to"] == bob
    assert sent["amount"] == "1250000000"
    assert HEX64.match(sent["id"])
    fee = int(sent["fee"])
    assert fee >= 1000  # at least the devnet's min_fee

    found = net.api.get(f"/v1/txs/{sent['id']}")
    assert found["status"] == "committed" and found["height"] == sent["height"]
    assert found["receipt"] == {"tx_id": sent["id"], "status": STATUS_OK, "fee": sent["fee"]}
    assert net.balance(bob) == 1_250_000_000
    assert net.balance(sender) == before - 1_250_000_000 - fee
    assert net.account(sender)["nonce"] == sent["nonce"] + 1

    balance = net.cli("wallet", "balance", "--name", "bob", "--json", check=True).json()
    assert {"address", "balance", "nonce", "next_nonce", "stake", "unbonding", "height"} \
        <= set(balance)
    assert balance["address"] == bob and balance["balance"] == "1250000000"
    assert balance["nonce"] == 0 and balance["stake"] == "0"
    by_address = net.cli("wallet", "balance", bob, "--json", check=True).json()
    assert by_address["balance"] == "1250000000"

    history = net.cli("wallet", "history", "--name", "bob", "--json", check=True).json()
    assert history["address"] == bob
    entries = [t for t in history["txs"] if t["id"] == sent["id"]]
    assert len(entries) == 1, history
    entry = entries[0]
    assert entry["height"] == sent["height"] and entry["kind"] == "transfer"
    assert entry["sender"] == sender
    assert entry["payload"]["to"] == bob and entry["payload"]["amount"] == "1250000000"
    sender_history = net.cli("wallet", "history", sender, "--json", check=True).json()
    assert sent["id"] in [t["id"] for t in sender_history["txs"]]


def test_transfer_plain_balance_and_history(net):
    erin = new_wallet(net, "erin")
    sender = net.home.wallet_address
    before = net.balance(sender)

    result = net.cli("wallet", "transfer", erin, "0.00000001", "--memo", "hi", "--wait",
                     check=True)
    match = re.fullmatch(rf"sent 0\.00000001 SSP to {erin} in block (\d+)\n"
                         r"  tx ([0-9a-f]{64})  fee (\d+) base units\n", result.stdout)
    assert match, result
    height, tx_id, fee = int(match.group(1)), match.group(2), int(match.group(3))
    found = net.api.get(f"/v1/txs/{tx_id}")
    assert found["status"] == "committed" and found["height"] == height
    assert found["tx"]["payload"]["memo"] == b"hi".hex()
    assert net.balance(erin) == 1
    assert net.balance(sender) == before - 1 - fee

    # Without --wait: reported pending, then committed.
    result = net.cli("wallet", "transfer", erin, "3", check=True)
    match = re.fullmatch(rf"sent 3 SSP to {erin} \(pending\)\n"
                         r"  tx ([0-9a-f]{64})  fee (\d+) base units\n", result.stdout)
    assert match, result
    second = match.group(1)
    net.node.wait_until(lambda s: net.api.get(f"/v1/txs/{second}")["status"] == "committed",
                        f"tx {second} committed")
    assert net.balance(erin) == 3 * SSP + 1

    out = net.cli("wallet", "balance", "--name", "erin", check=True).stdout
    assert out.splitlines()[0] == erin
    assert re.search(r"^  balance\s+3\.00000001 SSP$", out, re.M), out
    assert re.search(r"^  stake\s+0 SSP$", out, re.M), out
    assert re.search(r"^  nonce\s+0  \(next 0\)$", out, re.M), out
    out = net.cli("wallet", "balance", check=True).stdout
    assert out.splitlines()[0] == sender

    out = net.cli("wallet", "history", "--name", "erin", check=True).stdout
    lines = out.splitlines()
    assert lines[0] == f"{erin}: 2 transaction(s), newest first", out
    assert second[:16] in lines[1] and "3 SSP" in lines[1], out   # newest first
    assert tx_id[:16] in lines[2] and f"0.00000001 SSP {sender} -> {erin}" in lines[2], out
    assert f"#{height}" in lines[2]
    limited = net.cli("wallet", "history", erin, "--limit", "1", "--json", check=True).json()
    assert [t["id"] for t in limited["txs"]] == [second]


def test_transfer_json_without_wait_is_pending(net):
    frank = new_wallet(net, "frank")
    sent = net.cli("wallet", "transfer", frank, "1", "--json", check=True).json()
    assert sent["status"] == "pending" and "height" not in sent
    net.node.wait_until(lambda s: net.api.get(f"/v1/txs/{sent['id']}")["status"] == "committed",
                        f"tx {sent['id']} committed")
    assert net.balance(frank) == SSP


# -- error paths ----------------------------------------------------------------------------------

@JSON_OR_PLAIN
def test_bad_address_checksum(net, json_mode):
    bad = mistype(new_wallet(net, f"typo-{int(json_mode)}"))
    sender = net.account(net.home.wallet_address)
    for argv in (["wallet", "balance", bad], ["wallet", "history", bad],
                 ["wallet", "transfer", bad, "1"]):
        result = net.cli(*argv, *flags(json_mode))
        assert_error(result, "checksum", bad, code="AddressError", json_mode=json_mode)
    after = net.account(net.home.wallet_address)
    assert after["next_nonce"] == sender["next_nonce"], "nothing may be sent to a mistyped address"


@JSON_OR_PLAIN
def test_no_node_running(stopped_home, json_mode):
    url = stopped_home.api_url
    for argv in (["status"], ["wallet", "balance"], ["wallet", "history"],
                 ["wallet", "transfer", stopped_home.wallet_address, "1"]):
        result = stopped_home.cli(*argv, *flags(json_mode))
        assert_error(result, "no node is answering", url, code="no_node", json_mode=json_mode)


@JSON_OR_PLAIN
def test_insufficient_funds(net, json_mode):
    name = f"poor-{int(json_mode)}"
    poor = new_wallet(net, name)
    result = net.cli("wallet", "transfer", "--name", name, net.home.wallet_address, "1",
                     *flags(json_mode))
    assert_error(result, "insufficient_balance", "balance 0", code="insufficient_balance",
                 json_mode=json_mode)
    account = net.account(poor)
    assert account["balance"] == "0" and account["next_nonce"] == 0


@JSON_OR_PLAIN
def test_unknown_wallet_name(net, json_mode):
    for argv in (["wallet", "address", "--name", "nosuch"],
                 ["wallet", "balance", "--name", "nosuch"],
                 ["wallet", "history", "--name", "nosuch"],
                 ["wallet", "transfer", "--name", "nosuch", net.home.wallet_address, "1"]):
        result = net.cli(*argv, *flags(json_mode))
        assert_error(result, "no wallet named 'nosuch'", "wallet new --name nosuch",
                     code="no_wallet", json_mode=json_mode)


@JSON_OR_PLAIN
@pytest.mark.parametrize("amount, needle", [
    ("12.5.3", "is not a number"),
    ("-1", "is not a number"),
    ("abc", "is not a number"),
    ("1.123456789", "more than 8 decimals"),
    ("0", "more than 0"),
    ("0.00000000", "more than 0"),
    ("184467440737.09551616", "too large"),
    ("\uff11\uff12.5", "is not a number"),  # full-width digits are not ASCII digits
])
def test_malformed_amount(net, json_mode, amount, needle):
    to = net.home.info["node_address"]
    nonce = net.account(net.home.wallet_address)["next_nonce"]
    result = net.cli("wallet", "transfer", to, amount, *flags(json_mode))
    message = assert_error(result, needle, json_mode=json_mode)
    if needle != "more than 0":
        assert repr(amount) in message
    assert net.account(net.home.wallet_address)["next_nonce"] == nonce, "nothing may be sent"


@JSON_OR_PLAIN
def test_missing_home(tmp_path, json_mode):
    home = str(tmp_path / "no-such-home")
    for argv in (["status"], ["wallet", "balance", encode_address(bytes(20))]):
        result = run_cli("--home", home, *argv, *flags(json_mode))
        assert_error(result, "no node is set up", home, "init --devnet", code="ConfigError",
                     json_mode=json_mode)
    assert not os.path.exists(home), "a failed command must not create the home folder"


@JSON_OR_PLAIN
def test_node_of_another_chain_refused(net, module_node_factory, json_mode):
    other = module_node_factory.home(f"other-{int(json_mode)}")
    other.set_api_port(int(net.home.api_url.rsplit(":", 1)[1]))  # points at net's node
    for argv in (["status"], ["wallet", "balance"], ["wallet", "history"],
                 ["wallet", "transfer", net.home.wallet_address, "1"]):
        result = other.cli(*argv, *flags(json_mode))
        assert_error(result, "runs chain", other.chain_id, code="wrong_node", json_mode=json_mode)


def test_staking_voting_and_agent_commands(net):
    home = net.home
    stake = net.cli("wallet", "stake", "2000000", "--wait", "--json", check=True).json()
    assert stake["kind"] == "stake" and stake["status"] == "committed"
    agent = home.info["agent_address"]
    vote = net.cli("vote", agent, "--wait", check=True)
    assert "vote for" in vote.stdout and "in block" in vote.stdout
    account = net.account(home.wallet_address)
    assert account["stake"] == str(2_000_000 * 10**8) and account["votes"] == [agent]
    assert int(net.account(agent)["agent"]["votes"]) >= 2_000_000 * 10**8
    assert_error(net.cli("agent", "register", "again"), "already_agent")
    assert_error(net.cli("agent", "unjail", "--json"), "not_jailed", code="not_jailed",
                 json_mode=True)
    unstake = net.cli("wallet", "unstake", "1", "--wait", "--json", check=True).json()
    assert unstake["kind"] == "unstake"
    assert net.account(home.wallet_address)["unbonding"][0]["amount"] == str(10**8)
    assert_error(net.cli("wallet", "stake", "0"), "more than 0")
    assert_error(net.cli("vote", mistype(agent)), "checksum")


def test_contract_and_token_commands(net, tmp_path):
    issue = net.cli("token", "issue", "Parking Credit", "PARK", "2", "100000", "--wait",
                    "--json", check=True).json()
    token = issue["contract"]
    assert issue["receipt"]["status"] == STATUS_OK
    bob = new_wallet(net, "token-bob")
    sent = net.cli("token", "transfer", token, bob, "2500", "--wait", "--json", check=True).json()
    assert sent["receipt"]["events"][0]["name"] == "transfer"
    assert net.cli("token", "balance", token, bob, check=True).stdout.strip() == "2500"
    mine = net.cli("token", "balance", token, "--json", check=True).json()
    assert mine["balance"] == 97500
    receipt = net.cli("contract", "receipt", sent["id"], check=True).stdout
    assert "ok in block" in receipt and "event transfer" in receipt
    assert_error(net.cli("token", "transfer", token, bob, "999999", "--wait"),
                 "insufficient balance")

    source = tmp_path / "counter.lua"
    source.write_text("function init(n) chain.storage.set('n', chain.encode(n)) end\n"
                      "function add(k) local n = chain.decode(chain.storage.get('n')) + k\n"
                      "  chain.storage.set('n', chain.encode(n)); return n end\n"
                      "function get() return chain.decode(chain.storage.get('n')) end\n")
    deployed = net.cli("contract", "deploy", str(source), "40", "--wait", "--json",
                       check=True).json()
    counter = deployed["contract"]
    called = net.cli("contract", "call", counter, "add", "2", "--wait", "--json",
                     check=True).json()
    assert called["receipt"]["return"] == 42
    assert net.cli("contract", "query", counter, "get", check=True).stdout.strip() == "42"
    assert_error(net.cli("contract", "query", counter, "nope"), "no_method")
    assert_error(net.cli("contract", "deploy", str(tmp_path / "missing.lua")), "cannot read")


def test_owner_key_offline_rotates_the_producer_key_and_the_node_follows(node_factory, tmp_path):
    """The owner key leaves the home; a rotation is signed offline with it, submitted by
    ``tx submit``, and the node moves to the new producer key once the set change is final."""
    home = node_factory.home("rotating")
    node = node_factory.node(home)
    node.wait_height(2)
    kept = str(tmp_path / "owner-elsewhere.json")
    os.rename(os.path.join(home.path, "wallets", "owner.json"), kept)
    assert_error(home.cli("agent", "unjail"), "no owner key", code="no_owner")
    agent = home.info["agent_address"]
    nonce = home.client().get(f"/v1/accounts/{agent}")["next_nonce"]
    assert_error(home.cli("agent", "rotate-key", "--owner-key", kept, "--offline"), "--nonce")
    signed = home.cli("agent", "rotate-key", "--owner-key", kept, "--offline", "--nonce",
                      str(nonce), "--json", check=True).json()
    assert signed["kind"] == "rotate_producer" and HEX64.match(signed["producer"])
    assert os.stat(os.path.join(home.path, "node_key.json.next")).st_mode & 0o077 == 0
    assert home.client().get(f"/v1/accounts/{agent}")["agent"]["producer"] != signed["producer"]
    submitted = home.cli("tx", "submit", signed["hex"], "--wait", "--json", check=True).json()
    assert submitted["txs"][0]["status"] == "committed"
    assert home.client().get(f"/v1/accounts/{agent}")["agent"]["producer"] == signed["producer"]
    assert_error(home.cli("tx", "submit", "zz"), "not a signed transaction")

    def new_key_alone():
        schedule = home.client().get("/v1/schedule")
        return (schedule["finality"]["active"] == [signed["producer"]]
                and [p["pubkey"] for p in schedule["producers"]] == [signed["producer"]])
    end = time.monotonic() + 60
    while not new_key_alone():
        assert time.monotonic() < end, f"the new key never took over:\n{node.log_tail()}"
        time.sleep(0.2)
    height = home.client().get("/v1/status")["height"]
    lib = home.client().get("/v1/status")["lib_height"]
    node.wait_height(height + 3)
    status = home.client().get("/v1/status")
    assert status["lib_height"] > lib, "the new key's votes finalise"
    head = home.client().get("/v1/blocks/head")["header"]
    assert head["producer_pubkey"] == signed["producer"]
