#!/bin/bash
# The built SD image on a simulated gateway, end to end, with the time each step took: a copy of
# the card (grown by 2 GiB, with an SSH key on its boot partition) boots in QEMU (qemu-boot.sh),
# the health check marks slot A good, the update bundle is installed over SSH and slot B boots
# and is marked good, then an update that cannot boot (its kernel cut short) is installed: U-Boot
# spends its 3 tries and falls back to B, and `smartshare update status` gives the reason.
# Software emulation: expect minutes per boot. Not part of make test (make image first).
#
#   qemu-trial.sh [OUT_DIR]      (default image-build/out; works in OUT_DIR/trial)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/out}
IMAGE=$OUT/smartshare-edge-arm64.img
BUNDLE=$(ls "$OUT"/smartshare-edge-*-arm64.raucb | head -n 1)
WORK=$OUT/trial
BOOT_TIMEOUT=${BOOT_TIMEOUT:-1500}
rm -rf "$WORK" && mkdir -p "$WORK"
CARD=$WORK/card.img
LOG=$WORK/console.log
STARTED=$SECONDS
say() { echo "qemu-trial.sh: [$((SECONDS - STARTED)) s] $*"; }

cp --sparse=always "$IMAGE" "$CARD"
truncate -s +2G "$CARD"
ssh-keygen -q -t ed25519 -N "" -f "$WORK/id"
mcopy -i "$CARD@@4M" "$WORK/id.pub" ::/authorized_keys
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"$HERE/qemu-boot.sh" "$CARD" "$PORT" < /dev/null > "$LOG" 2>&1 &
QEMU=$!
trap 'kill "$QEMU" 2>/dev/null; wait "$QEMU" 2>/dev/null || true' EXIT

gw() {
    ssh -q -p "$PORT" -i "$WORK/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=20 -o BatchMode=yes root@127.0.0.1 "$@"
}
# Waits until the console has printed PATTERN more than COUNT times.
console() {
    local pattern=$1 count=$2 deadline=$((SECONDS + BOOT_TIMEOUT))
    until [ "$(grep -c -- "$pattern" "$LOG" || true)" -gt "$count" ]; do
        kill -0 "$QEMU" 2>/dev/null || { say "QEMU exited"; tail -n 40 "$LOG"; exit 1; }
        [ $SECONDS -lt $deadline ] || { say "timed out waiting for '$pattern'"; tail -n 40 "$LOG"; exit 1; }
        sleep 2
    done
}
# Waits until the health check has run on slot SLOT (and the status shows EXPECT), then prints
# the update status.
healthy() {
    local slot=$1 expect=${2:-.} deadline=$((SECONDS + BOOT_TIMEOUT)) status
    until status=$(gw smartshare update status 2>/dev/null) \
            && grep -q "^running   slot $slot" <<< "$status" \
            && grep -q -- "$expect" <<< "$status" \
            && ! grep -q "^health    not checked" <<< "$status" \
            && [ "$(gw systemctl show -P ActiveState smartshare-health.service)" != activating ]; do
        [ $SECONDS -lt $deadline ] || { say "slot $slot: no health verdict"; tail -n 40 "$LOG"; exit 1; }
        sleep 5
    done
    echo "$status"
}
booted() { grep -c "SmartShare: booting slot" "$LOG" || true; }

say "first boot of $IMAGE ($(du -h --apparent-size "$CARD" | cut -f1) card), SSH on 127.0.0.1:$PORT"
console "SmartShare: booting slot A" 0
say "U-Boot chose slot A"
console "login:" 0
say "login prompt"
healthy A
say "slot A healthy"
gw 'systemd-analyze; smartshare status; df -h /data | tail -n 1; free -m | sed -n 2p'

say "update: $(basename "$BUNDLE") into slot B"
gw "cat > /data/update.raucb" < "$BUNDLE"
gw "smartshare update install /data/update.raucb && rm /data/update.raucb"
say "installed"
BOOTS=$(booted)
gw "systemctl reboot" || true
console "SmartShare: booting slot" "$BOOTS"
grep "SmartShare: booting slot" "$LOG" | tail -n 1
healthy B
say "slot B healthy"

say "an update that cannot boot: the same root with its kernel cut short, into slot A"
cp --sparse=always "$OUT/rootfs.ext4" "$WORK/broken.ext4"
head -c 4096 /dev/zero > "$WORK/Image"
printf 'cd /boot\nrm Image\nwrite %s Image\n' "$WORK/Image" | debugfs -w -f - "$WORK/broken.ext4" >/dev/null 2>&1
"$HERE/mkbundle.sh" "$WORK/broken.ext4" "broken" "$OUT/keys" "$WORK/broken.raucb" >/dev/null
gw "cat > /data/update.raucb" < "$WORK/broken.raucb"
gw "smartshare update install /data/update.raucb && rm /data/update.raucb"
BOOTS=$(booted)
gw "systemctl reboot" || true
console "SmartShare: booting slot" $((BOOTS + 3))
grep "SmartShare: booting slot" "$LOG" | tail -n 4
healthy B "from slot A to slot B"
say "rolled back to slot B"
gw "journalctl --list-boots --no-pager | tail -n 4"
say "done"
