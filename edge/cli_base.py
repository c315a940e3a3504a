"""What every ``smartshare`` subcommand shares: the user-facing error and the way to the node."""

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
    return config_mod.load(home_of(args))


def client_for(args):
    """An API client for the node configured in the chosen home."""
    return ApiClient(load_config(args).api_url)
