#!/bin/bash
# Stages what the SD image boots with, inside the arm64 root tree ROOT (an mmdebstrap hook of
# mkroot.sh): ROOT/boot/firmware gets the boot partition's files (Raspberry Pi firmware from
# Debian's raspi-firmware, U-Boot from u-boot-rpi, the board device trees from the kernel
# package, config.txt, boot.scr); ROOT/boot gets the kernel as U-Boot's booti wants it
# (/boot/Image, uncompressed) and /boot/initrd.img. The two .deb files are only unpacked here,
# never installed: nothing in the root slot writes to the shared boot partition.
set -euo pipefail
ROOT=${1:?usage: bootfiles.sh ROOT}
HERE=$(cd "$(dirname "$0")" && pwd)
FW=$ROOT/boot/firmware
UNPACKED=$(mktemp -d)
trap 'rm -rf "$UNPACKED"' EXIT

mkdir -p "$FW" "$ROOT/tmp/bootdebs"
chroot "$ROOT" sh -c 'cd /tmp/bootdebs && apt-get download --quiet raspi-firmware u-boot-rpi'
for deb in "$ROOT"/tmp/bootdebs/*.deb; do
    dpkg-deb -x "$deb" "$UNPACKED"
done
rm -rf "$ROOT/tmp/bootdebs"

cp "$UNPACKED"/usr/lib/raspi-firmware/bootcode.bin "$UNPACKED"/usr/lib/raspi-firmware/fixup*.dat \
   "$UNPACKED"/usr/lib/raspi-firmware/start*.elf "$FW/"
cp "$UNPACKED/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$FW/u-boot.bin"
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n 1)
cp "$ROOT"/usr/lib/linux-image-"$KVER"/broadcom/bcm*-rpi-*.dtb "$FW/"
cp "$HERE/files/boot/config.txt" "$FW/config.txt"
mkimage -A arm64 -O linux -T script -C none -n "SmartShare Edge A/B boot" \
    -d "$HERE/files/boot/boot.cmd" "$FW/boot.scr" >/dev/null

VMLINUZ=$ROOT/boot/vmlinuz-$KVER
if gzip -t "$VMLINUZ" 2>/dev/null; then
    zcat "$VMLINUZ" > "$ROOT/boot/Image"
else
    cp "$VMLINUZ" "$ROOT/boot/Image"
fi
ln -sf "initrd.img-$KVER" "$ROOT/boot/initrd.img"
echo "bootfiles.sh: kernel $KVER, $(ls "$FW" | wc -l) files on the boot partition"
