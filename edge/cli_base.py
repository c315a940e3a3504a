"""What every ``smartshare`` subcommand shares: the user-facing error and the way to the node."""

from chain.genesis import Genesis
from edge import config as config_mod
from edge.client import ApiClient


class CliError(Exception):
    """A user-facing failure: one sentence that says what was wrong and what to do."""

    def __init__(self, message, code="error"):
        super().__init__(message)
        self.code = code


def home_of(args):
    return config_mod.resolve_home(args.home)


def load_config(args):
    return config_mod.load_file(config_mod.config_path(args.home))


def client_for_home(args):
    """An API client for the home's node, checked to run the home's chain."""
    return node_status(args)[0]


def node_status(args):
    """``(client, status)`` of the home's node, refusing a node that runs another chain."""
    config = load_config(args)
    client = ApiClient.for_home(config.home, config.api_url)
    status = client.get("/v1/status")
    expected = Genesis.load(config.path(config.genesis_file)).chain_id
    if status["chain_id"] != expected:
        raise CliError(f"the node at {config.api_url} runs chain {status['chain_id']!r}, but "
                       f"{config.home} is set up for {expected!r}; check [api] port in "
                       "config.toml", "wrong_node")
    return client, status
