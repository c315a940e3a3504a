#!/bin/bash
# Checks an SD image made by mkimage.sh without mounting it: the partition table (sfdisk), each
# file system (fsck.vfat, e2fsck), and what the root slot must hold (debugfs): the units enabled,
# the node's user, the venv with the Cython twins built for arm64, no SSH host key.
set -euo pipefail
IMAGE=${1:?usage: check-image.sh IMAGE}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "check-image.sh: FAILED: $*" >&2; exit 1; }

echo "== partition table"
sfdisk --dump "$IMAGE"
mapfile -t PARTS < <(sfdisk --json "$IMAGE" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["partitiontable"]["partitions"]:
    print(p["start"], p["size"], p["type"])')
[ "${#PARTS[@]}" = 4 ] || fail "expected 4 partitions, found ${#PARTS[@]}"
extract() {  # partition number -> file
    read -r start size _ <<< "${PARTS[$(($1 - 1))]}"
    dd if="$IMAGE" of="$WORK/p$1" bs=512 skip="$start" count="$size" conv=sparse status=none
    echo "$WORK/p$1"
}

echo "== p1 boot (FAT)"
BOOT=$(extract 1)
fsck.vfat -n "$BOOT"
mdir -i "$BOOT" ::/ | grep -E "u-boot|boot.scr|config|start4|bcm2711" || fail "boot files missing"
for name in u-boot.bin boot.scr config.txt start4.elf fixup4.dat bootcode.bin \
            bcm2711-rpi-4-b.dtb bcm2837-rpi-3-b.dtb; do
    mdir -i "$BOOT" "::/$name" >/dev/null 2>&1 || fail "$name missing on the boot partition"
done

for n in 2 3 4; do
    echo "== p$n (ext4)"
    e2fsck -fn "$(extract "$n")"
done
ROOT=$WORK/p2
ask() { debugfs -R "$1" "$ROOT" 2>/dev/null; }
echo "== root slot A contents"
for path in /boot/Image /boot/initrd.img /etc/fstab /etc/rauc/system.conf /etc/rauc/keyring.pem \
            /usr/lib/smartshare/rauc-backend /opt/smartshare/venv/bin/smartshare; do
    ask "stat $path" | grep -q "Inode:" || fail "$path missing in root slot A"
done
for unit in smartshare-firstboot smartshare-mosquitto smartshare-node smartshare-health \
            smartshare-ssh; do
    ask "stat /etc/systemd/system/multi-user.target.wants/$unit.service" | grep -q "Type: symlink" \
        || fail "$unit.service is not enabled"
done
ask "stat /etc/systemd/system/multi-user.target.wants/ssh.service" | grep -q "Inode:" \
    && fail "ssh.service must be off by default"
ask "ls /etc/ssh" | grep -q "ssh_host_" && fail "SSH host keys in the image"
ask "cat /etc/passwd" | grep -q "^smartshare:x:850:850:" || fail "no smartshare user (uid 850)"
SO=$(ask "ls -p /opt/smartshare/venv/lib/python3.11/site-packages/edge/_fast" | tr '/' '\n' \
     | grep -m1 "^sig_c.*\.so$") || fail "no compiled Cython twins in the venv"
ask "dump /opt/smartshare/venv/lib/python3.11/site-packages/edge/_fast/$SO $WORK/twin.so" >/dev/null
file "$WORK/twin.so" | grep -q "ARM aarch64" || fail "$SO is not built for arm64"
echo "   $SO: $(file -b "$WORK/twin.so" | cut -d, -f1-2)"
echo "== data partition"
debugfs -R "ls -l /" "$WORK/p4" 2>/dev/null | grep -E "smartshare|etc|update|journal|ssh|rauc"
echo "check-image.sh: $IMAGE is sound"
