"""A/B updates of the gateway's root filesystem (image-build/README.md): two root slots, the boot
state shared with U-Boot's boot script (bootstate.py), the health check that marks a slot good
(health.py), the update records on the data partition (records.py), and the logic that ties them
together and tells why a rollback happened (slots.py). RAUC writes signed bundles to the slots
and drives the boot state through ``smartshare update backend`` (its custom bootloader backend).
"""
