"""Node home folder and its TOML config (DESIGN §9).

The home is ``--home``, else ``$SMARTSHARE_HOME``, else ``~/.smartshare``. It holds
``config.toml``, ``genesis.json``, ``node_key.json``, ``wallets/`` and the LMDB data folder.

On the SD image the config lives apart from the home: ``/etc/smartshare/edge.toml`` (or
``$SMARTSHARE_CONFIG``), whose ``[system] home`` names the state folder (/var/lib/smartshare)
and ``[system] units`` the node's systemd units. The CLI uses it when neither ``--home`` nor
``$SMARTSHARE_HOME`` is given and ``~/.smartshare`` holds no node.
"""

import hashlib
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field

import tomli_w

from chain.store import DEFAULT_MAP_SIZE, DEFAULT_PRUNE_DEPTH

DEFAULT_API_PORT = 8645
DEFAULT_MQTT_TLS_PORT = 8883
CONFIG_NAME = "config.toml"


class ConfigError(Exception):
    """The home folder or its config is missing or wrong; the message says how to fix it."""


SYSTEM_CONFIG = "/etc/smartshare/edge.toml"


def config_path(cli_home=None):
    """The config file chosen by ``--home``, ``$SMARTSHARE_HOME``, ``$SMARTSHARE_CONFIG``,
    ``~/.smartshare`` when it holds a node, else the image's /etc/smartshare/edge.toml when
    there is one (else ``~/.smartshare/config.toml``, for ``init`` and the error message)."""
    home = cli_home or os.environ.get("SMARTSHARE_HOME")
    if home:
        return os.path.join(os.path.abspath(home), CONFIG_NAME)
    if os.environ.get("SMARTSHARE_CONFIG"):
        return os.path.abspath(os.environ["SMARTSHARE_CONFIG"])
    user = os.path.join(os.path.expanduser("~/.smartshare"), CONFIG_NAME)
    if not os.path.exists(user) and os.path.exists(SYSTEM_CONFIG):
        return SYSTEM_CONFIG
    return user


def resolve_home(cli_home=None):
    """The home folder: that of the chosen config file (its ``[system] home`` if it has one)."""
    path = config_path(cli_home)
    return load_file(path).home if os.path.exists(path) else os.path.dirname(path)


@dataclass
class Config:
    """Settings of one node, with paths resolved against its home."""
    home: str
    role: str = "agent"        # "agent": full node (produces when elected); "light": headers only
    data_dir: str = "data"
    key_file: str = "node_key.json"
    votes_dir: str = "votes"
    genesis_file: str = "genesis.json"
    prune_depth: int = DEFAULT_PRUNE_DEPTH  # at least params.heavy_window + 1
    min_free_mb: int = 1024    # device frames are not written below this much free space
    map_size_mb: int = DEFAULT_MAP_SIZE >> 20  # address space; grows (quiesced) if ever full
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    mempool_limit: int = 20_000
    p2p_host: str = "127.0.0.1"
    p2p_port: int = 0
    seeds: list = field(default_factory=list)
    max_peers: int = 24
    max_outbound: int = 8
    handshakes_per_minute: int = 20
    peers_per_address: int = 4
    admin_api: bool = False
    equivocate: bool = False
    exempt_loopback: bool = False
    mqtt_port: int = 0
    mqtt_host: str = "127.0.0.1"
    mqtt_run_broker: bool = True
    mqtt_dir: str = "mqtt"
    mqtt_bridge_password: str = ""
    mqtt_provision_password: str = ""
    frame_retention_days: int = 30   # device frames kept this long at most...
    frame_budget_mb: int = 8192      # ...and in at most this many MB of the data file
    advertise: bool = False
    discovery_interfaces: list = field(default_factory=list)  # IPs to advertise on; [] = all
    ha_enabled: bool = False
    ha_discovery_prefix: str = "homeassistant"
    ha_password: str = ""  # Home Assistant's own broker account (user "homeassistant")
    mqtt_tls_port: int = 0             # [mqtt_tls] port: where devices connect (TLS); 0 = none
    mqtt_tls_host: str = "0.0.0.0"     # [mqtt_tls] host
    api_allowed_hosts: list = field(default_factory=list)    # [api_access] hosts
    api_allowed_origins: list = field(default_factory=list)  # [api_access] origins
    units: list = field(default_factory=list)  # [system] units: systemd units of this node
    light_dir: str = "light"        # a light node's store (headers window, finality)
    light_checkpoint: str = ""      # "": learn from peers; "genesis"; or "HEIGHT:HASH" (hex)
    light_agree: int = 2            # peers that must agree on a learned checkpoint
    light_window: int = 2048        # headers a light node keeps
    config_file: str = ""  # where the config lives; default: config.toml in the home
    mqtt_market_password: str = ""  # buyers' agents' broker account (user "market")
    agent_enabled: bool = True      # the SmartAgent sells the devices' services (needs mqtt)
    agent_key_file: str = "agent_key.json"   # the agent's wallet (payee, fees); made at start
    agent_interval_s: int = 10      # metering interval: a statement and a voucher each
    agent_settlement_s: int = 86_400   # at most one installment per channel this often
    agent_dispute_s: int = 3_600    # dispute window of the channels it accepts
    agent_channel_blocks: int = 604_800   # a channel's lifetime in blocks (a week at 1 s)
    agent_retention_days: int = 7   # settled frames and sessions are pruned after this
    agent_channel_contract: str = ""   # a payment_channel deployment to use ("" = deploy one)
    agent_auto_offer: bool = True   # offer every approved device's services at default prices
    agent_data_contract: str = ""   # a data_market deployment to use ("" = deploy one)
    agent_data_fee_account: str = ""   # where a deployed data_market's fee goes ("" = the agent)
    agent_data_fee_permille: int = 20  # the platform fee of a deployed data_market (2 %)
    agent_data_retention_days: int = 365   # a dataset's records are kept this long

    def path(self, name):
        return os.path.join(self.home, name)

    @property
    def api_url(self):
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def file(self):
        return self.config_file or self.path(CONFIG_NAME)

    def to_toml(self):
        doc = {}
        if os.path.dirname(os.path.abspath(self.file)) != os.path.abspath(self.home):
            doc["system"] = {"home": self.home}
        for (section, key), (attr, _) in FIELDS.items():
            if section != "system" or getattr(self, attr):
                doc.setdefault(section, {})[key] = getattr(self, attr)
        return doc

    def save(self):
        """Write the config file, mode 0600 (it holds the broker passwords)."""
        path = self.file
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            tomli_w.dump(self.to_toml(), f)
        os.chmod(path, 0o600)

    @property
    def mqtt_enabled(self):
        return self.mqtt_port > 0 or self.mqtt_tls_port > 0

    @property
    def market_password(self):
        """The broker password of buyers' agents (user ``market``); homes made before it
        existed derive one from the bridge's."""
        if self.mqtt_market_password or not self.mqtt_bridge_password:
            return self.mqtt_market_password
        return hashlib.blake2b(self.mqtt_bridge_password.encode(), digest_size=12,
                               person=b"ss-market").hexdigest()


# (section, key in config.toml) -> (Config attribute, type). p2p port 0 = no peer network.
FIELDS = {
    ("node", "role"): ("role", str),
    ("node", "data_dir"): ("data_dir", str), ("node", "key_file"): ("key_file", str),
    ("node", "votes_dir"): ("votes_dir", str),
    ("node", "genesis"): ("genesis_file", str), ("node", "prune_depth"): ("prune_depth", int),
    ("node", "map_size_mb"): ("map_size_mb", int), ("node", "min_free_mb"): ("min_free_mb", int), ("api", "host"): ("api_host", str),
    ("api", "port"): ("api_port", int), ("mempool", "limit"): ("mempool_limit", int),
    ("p2p", "host"): ("p2p_host", str), ("p2p", "port"): ("p2p_port", int),
    ("p2p", "seeds"): ("seeds", list), ("p2p", "max_peers"): ("max_peers", int),
    ("p2p", "max_outbound"): ("max_outbound", int),
    ("p2p", "handshakes_per_minute"): ("handshakes_per_minute", int),
    ("p2p", "peers_per_address"): ("peers_per_address", int),
    ("testing", "admin_api"): ("admin_api", bool), ("testing", "equivocate"): ("equivocate", bool),
    ("testing", "exempt_loopback"): ("exempt_loopback", bool),
    ("mqtt", "port"): ("mqtt_port", int), ("mqtt", "host"): ("mqtt_host", str),
    ("mqtt", "run_broker"): ("mqtt_run_broker", bool), ("mqtt", "dir"): ("mqtt_dir", str),
    ("mqtt", "bridge_password"): ("mqtt_bridge_password", str),
    ("mqtt", "provision_password"): ("mqtt_provision_password", str),
    ("mqtt", "frame_retention_days"): ("frame_retention_days", int),
    ("mqtt", "frame_budget_mb"): ("frame_budget_mb", int),
    ("discovery", "advertise"): ("advertise", bool),
    ("discovery", "interfaces"): ("discovery_interfaces", list),
    ("homeassistant", "enabled"): ("ha_enabled", bool),
    ("homeassistant", "discovery_prefix"): ("ha_discovery_prefix", str),
    ("homeassistant", "password"): ("ha_password", str),
    ("system", "units"): ("units", list),
    ("mqtt_tls", "port"): ("mqtt_tls_port", int), ("mqtt_tls", "host"): ("mqtt_tls_host", str),
    ("api_access", "hosts"): ("api_allowed_hosts", list),
    ("api_access", "origins"): ("api_allowed_origins", list),
    ("light", "data_dir"): ("light_dir", str), ("light", "checkpoint"): ("light_checkpoint", str),
    ("light", "agree"): ("light_agree", int), ("light", "window"): ("light_window", int),
    ("mqtt", "market_password"): ("mqtt_market_password", str),
    ("agent", "enabled"): ("agent_enabled", bool), ("agent", "key_file"): ("agent_key_file", str),
    ("agent", "interval_s"): ("agent_interval_s", int),
    ("agent", "settlement_s"): ("agent_settlement_s", int),
    ("agent", "dispute_s"): ("agent_dispute_s", int),
    ("agent", "channel_blocks"): ("agent_channel_blocks", int),
    ("agent", "retention_days"): ("agent_retention_days", int),
    ("agent", "channel_contract"): ("agent_channel_contract", str),
    ("agent", "auto_offer"): ("agent_auto_offer", bool),
    ("agent", "data_contract"): ("agent_data_contract", str),
    ("agent", "data_fee_account"): ("agent_data_fee_account", str),
    ("agent", "data_fee_permille"): ("agent_data_fee_permille", int),
    ("agent", "data_retention_days"): ("agent_data_retention_days", int),
}


def load(home):
    """Read ``home/config.toml``; raises ConfigError with what to do."""
    return load_file(os.path.join(home, CONFIG_NAME))


def load_file(path):
    """Read a config file (a home's config.toml, or the image's edge.toml with its
    ``[system] home``); raises ConfigError with what to do."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"no node is set up in {os.path.dirname(path)} (no "
                          f"{os.path.basename(path)}); create one with: smartshare init "
                          "--devnet") from None
    except PermissionError:
        raise ConfigError(f"cannot read {path} (permission denied): run smartshare as root "
                          "(sudo) or as the node's user") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    home = doc.get("system", {}).get("home", os.path.dirname(os.path.abspath(path)))
    if not isinstance(home, str) or not os.path.isabs(home):
        raise ConfigError(f"{path}: [system] home must be an absolute path")
    config = Config(home=home, config_file=os.path.abspath(path))
    for (section, key), (attr, kind) in FIELDS.items():
        value = doc.get(section, {}).get(key)
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"{path}: [{section}] {key} must be a {kind.__name__}")
        setattr(config, attr, value)
    for port, name in ((config.api_port, "[api] port"), (config.p2p_port, "[p2p] port"),
                       (config.mqtt_port, "[mqtt] port"),
                       (config.mqtt_tls_port, "[mqtt_tls] port")):
        if not 0 <= port < 65536 or (name == "[api] port" and port == 0):
            raise ConfigError(f"{path}: {name} must be 1..65535")
    if config.mqtt_port and not is_loopback(config.mqtt_host):
        raise ConfigError(f"{path}: [mqtt] host {config.mqtt_host!r}: the plaintext listener may "
                          "only be on loopback (127.0.0.1); devices and Home Assistant connect "
                          "with TLS on [mqtt_tls] port")
    if not all(isinstance(unit, str) and unit.endswith(".service") for unit in config.units):
        raise ConfigError(f"{path}: [system] units must be names of systemd services")
    check(config, path)
    return config


def check(config, path):
    """Raise ConfigError when settings of ``config`` (read from ``path``) cannot work."""
    _check_p2p_limits(config, path)
    _check_light(config, path)
    for value, name, least in ((config.min_free_mb, "[node] min_free_mb", 0),
                               (config.frame_retention_days, "[mqtt] frame_retention_days", 1),
                               (config.frame_budget_mb, "[mqtt] frame_budget_mb", 1)):
        if value < least:
            raise ConfigError(f"{path}: {name} must be at least {least}, not {value}")
    _check_agent(config, path)
    for seed in config.seeds:
        if not isinstance(seed, str) or not _is_host_port(seed):
            raise ConfigError(f"{path}: [p2p] seeds must be \"host:port\" strings, not {seed!r}")


ROLES = ("agent", "light")


def _check_light(config, path):
    if config.role not in ROLES:
        raise ConfigError(f"{path}: [node] role must be one of {', '.join(ROLES)}, not "
                          f"{config.role!r}")
    checkpoint = config.light_checkpoint
    if checkpoint not in ("", "genesis"):
        height, sep, block_hash = checkpoint.partition(":")
        try:
            ok = sep and height.isdigit() and len(bytes.fromhex(block_hash)) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"{path}: [light] checkpoint must be \"HEIGHT:HASH\" (the height "
                              "and 64 hex characters of an irreversible block), \"genesis\", or "
                              f"\"\" to learn one from peers, not {checkpoint!r}")
    if config.light_agree < 1:
        raise ConfigError(f"{path}: [light] agree must be at least 1")
    if config.light_window < 64:
        raise ConfigError(f"{path}: [light] window must be at least 64 headers")
    if config.role == "light" and not config.seeds and not config.advertise:
        raise ConfigError(f"{path}: a light node needs peers: set [p2p] seeds, or [discovery] "
                          "advertise = true to find full nodes on the LAN")


def _check_agent(config, path):
    for name, value, low, high in (("interval_s", config.agent_interval_s, 1, 3600),
                                   ("settlement_s", config.agent_settlement_s, 1, 10**8),
                                   ("dispute_s", config.agent_dispute_s, 1, 7 * 86_400),
                                   ("channel_blocks", config.agent_channel_blocks, 10, 10**9),
                                   ("retention_days", config.agent_retention_days, 1, 10**4),
                                   ("data_fee_permille", config.agent_data_fee_permille, 0, 500),
                                   ("data_retention_days", config.agent_data_retention_days, 1,
                                    10**5)):
        if not low <= value <= high:
            raise ConfigError(f"{path}: [agent] {name} must be within {low}..{high}")


def _check_p2p_limits(config, path):
    if not 1 <= config.max_outbound < config.max_peers:
        raise ConfigError(f"{path}: [p2p] max_outbound must be at least 1 and below max_peers "
                          f"({config.max_peers}), not {config.max_outbound}")
    for value, name in ((config.handshakes_per_minute, "handshakes_per_minute"),
                        (config.peers_per_address, "peers_per_address")):
        if value < 1:
            raise ConfigError(f"{path}: [p2p] {name} must be at least 1, not {value}")


def is_loopback(host):
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_host_port(text):
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536
