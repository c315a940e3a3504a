"""A/B updates against a simulated gateway whose bootloader is the real one (tests/bootkit.py:
U-Boot in QEMU running image-build/files/boot/boot.cmd on a FAT boot partition): slot choice,
boot counting (at most 3 tries), the health check marking a slot good, the automatic fallback
when an update fails its checks or never boots, the reason recorded and shown by
``smartshare update status``, and the reset when no slot has a try left."""

import pytest

from edge.update.bootstate import BootState
from edge.update.slots import FAILED, GOOD, REBOOT, describe
from tests import bootkit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(bootkit.missing_requirements() is not None,
                                 reason=str(bootkit.missing_requirements()))]

UNHEALTHY = ("not healthy 300 s after boot: smartshare-node.service is activating "
             "(auto-restart); last log: error: genesis.json is not valid")


@pytest.fixture
def gateway(tmp_path):
    gateway = bootkit.Gateway(tmp_path)
    slot, outcome, _ = gateway.boot_and_check(True)  # the freshly flashed card
    assert (slot, outcome) == ("A", GOOD)
    assert gateway.state() == BootState(["A", "B"], {"A": 3, "B": 3})
    return gateway


def test_a_good_update_becomes_the_running_slot(gateway):
    assert gateway.install("2.0") == "B"
    assert gateway.state() == BootState(["B", "A"], {"A": 3, "B": 3})
    status = gateway.linux(lambda slots: slots.status())
    assert status["pending"] == "B" and "pending   slot B boots next" in describe(status)
    slot, outcome, text = gateway.boot_and_check(True)
    assert (slot, outcome) == ("B", GOOD), text
    assert gateway.state() == BootState(["B", "A"], {"A": 3, "B": 3})
    status = gateway.linux(lambda slots: slots.status())
    assert status["booted"] == "B" and status["version"] == "2.0" and not status["trial"]
    assert status["last_rollback"] is None
    # A slot that proved itself is not rebooted over a failed check (no reboot loop).
    slot, outcome, text = gateway.boot_and_check(False, UNHEALTHY)
    assert (slot, outcome) == ("B", FAILED), text
    assert "NOT healthy" in describe(gateway.linux(lambda slots: slots.status()))


def test_an_update_that_fails_its_checks_rolls_back_with_the_reason(gateway):
    gateway.install("2.0")
    for tries_left in (2, 1, 0):
        slot, outcome, text = gateway.boot_and_check(False, UNHEALTHY)
        assert (slot, outcome) == ("B", REBOOT), text
        assert gateway.state().left["B"] == tries_left
    slot, outcome, text = gateway.boot_and_check(True)  # U-Boot passed over B
    assert (slot, outcome) == ("A", GOOD), text
    assert "rolled back from slot B" in text
    assert gateway.state() == BootState(["A"], {"A": 3, "B": 0})
    status = gateway.linux(lambda slots: slots.status())
    rollback = status["last_rollback"]
    assert (rollback["from"], rollback["to"]) == ("B", "A")
    assert rollback["reason"].startswith("slot B (version 2.0) failed its health check on 3 "
                                         "boot(s) of 3 tries; last: not healthy 300 s")
    assert "genesis.json is not valid" in rollback["reason"]
    text = describe(status)
    assert "running   slot A, version 1.0" in text and "rollback " in text
    assert "from slot B to slot A" in text
    assert gateway.boot_and_check(True)[:2] == ("A", GOOD), "B stays out of the boot order"


def test_an_update_that_never_boots_rolls_back(gateway):
    gateway.install("2.0")
    assert [gateway.power_on() for _ in range(3)] == ["B", "B", "B"]  # Linux never came up
    assert gateway.state().left["B"] == 0
    slot, outcome, text = gateway.boot_and_check(True)
    assert (slot, outcome) == ("A", GOOD), text
    reason = gateway.linux(lambda slots: slots.status())["last_rollback"]["reason"]
    assert reason.startswith("slot B (version 2.0) used its 3 tries without reaching the "
                             "health check"), reason


def test_no_slot_with_a_try_left_gives_both_three_again(gateway):
    gateway.linux(lambda slots: slots.boot.write(BootState(["A", "B"], {"A": 0, "B": 0})))
    assert gateway.power_on() is None
    assert gateway.state() == BootState(["A", "B"], {"A": 3, "B": 3})
    assert gateway.boot_and_check(True)[:2] == ("A", GOOD)
