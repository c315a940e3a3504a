"""Shared pytest fixtures.

Node processes (tests/nodeproc.py):
  ``node_factory``        function-scoped: make devnet homes and start nodes; all stopped after.
  ``module_node_factory`` the same, shared by the tests of one module (one node, lower runtime).
"""

import pytest

from tests import nodeproc


class NodeFactory:
    """Creates devnet homes under ``base`` and node processes on them; ``close()`` stops all."""

    def __init__(self, base):
        self.base = base
        self.nodes = []

    def home(self, name="home", api_port=None, mqtt_port=0):
        """``smartshare init --devnet`` in a new folder ``base/name`` (with a Mosquitto broker
        on ``mqtt_port`` when it is set)."""
        return nodeproc.NodeHome.init(self.base / name, api_port, mqtt_port)

    def node(self, home, start=True, **options):
        """A node process on ``home`` (started and ready unless ``start`` is False); options go
        to ``nodeproc.NodeProcess`` (own_group, args)."""
        node = nodeproc.NodeProcess(home, self.base / f"{home.path.rsplit('/', 1)[-1]}-node.log",
                                    **options)
        self.nodes.append(node)
        for attempt in range(3 if start else 0):
            try:
                node.start()
                break
            except AssertionError:
                # The free port picked at init was taken by someone else meanwhile: move on.
                if attempt == 2 or "cannot serve the API" not in node.log_tail(3):
                    raise
                home.set_api_port(nodeproc.free_port())
        return node

    def close(self):
        for node in self.nodes:
            node.stop()


@pytest.fixture
def node_factory(tmp_path):
    factory = NodeFactory(tmp_path)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_node_factory(tmp_path_factory, request):
    factory = NodeFactory(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
    yield factory
    factory.close()


@pytest.fixture(scope="session", autouse=True)
def _no_leftover_nodes():
    """Last-resort cleanup: no node process outlives the test session."""
    yield
    nodeproc.stop_all()


@pytest.fixture
def mqtt_world(tmp_path):
    """A real Mosquitto on a free port with the device registry on a temp LMDB
    (tests/mqttkit.py); the broker, bridges and clients are stopped after the test."""
    from tests.mqttkit import MqttWorld
    world = MqttWorld(tmp_path)
    try:
        yield world
    finally:
        world.close()


def pytest_terminal_summary(terminalreporter):
    """Print the systemd units' sandbox exposure scores measured by tests/test_units.py."""
    import sys
    units = sys.modules.get("tests.test_units")
    if units is not None and units.SCORES:
        terminalreporter.write_sep("-", "systemd-analyze security (exposure, lower is safer)")
        for name, score in sorted(units.SCORES.items()):
            target = units.TARGETS.get(name)
            terminalreporter.write_line(f"{name:<34} {score:4.1f}"
                                        + (f"   target <= {target}" if target else ""))
