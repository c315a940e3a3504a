#!/bin/bash
# Boots the SD image in QEMU, without a board: QEMU's arm64 "virt" machine with Debian's U-Boot
# for QEMU (package u-boot-qemu) runs the image's own boot.scr, which picks a root slot from the
# boot state on partition 1 and boots Debian's kernel from it; then the same first boot, units
# and health check as on a Raspberry Pi (the Pi's firmware and device trees are not used). The
# image file is the "SD card": work on a copy. SSH is forwarded to 127.0.0.1:SSH_PORT (put an
# authorized_keys file on partition 1 first, e.g. with mcopy -i IMAGE@@4M).
#
#   qemu-boot.sh IMAGE [SSH_PORT]       (Ctrl-A X quits)
set -euo pipefail
IMAGE=${1:?usage: qemu-boot.sh IMAGE [SSH_PORT]}
PORT=${2:-2222}
UBOOT=/usr/lib/u-boot/qemu_arm64/u-boot.bin
[ -e "$UBOOT" ] || { echo "qemu-boot.sh: apt-get install u-boot-qemu qemu-system-arm" >&2; exit 1; }
exec qemu-system-aarch64 -machine virt -cpu cortex-a72 -smp 2 -m 1024 -nographic \
    -bios "$UBOOT" \
    -drive if=none,id=disk,format=raw,file="$IMAGE" -device virtio-blk-device,drive=disk \
    -netdev user,id=net,hostfwd=tcp:127.0.0.1:"$PORT"-:22 -device virtio-net-device,netdev=net \
    -device virtio-rng-device
