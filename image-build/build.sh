#!/bin/bash
# `make image`: the arm64 SD image of SmartShare Edge and a signed update bundle of the same
# root, in image-build/out/ (OUT=...), checked, with the time each step took.
#
#   out/smartshare-edge-arm64.img.xz   flash this (Raspberry Pi Imager, dd, bmaptool...)
#   out/smartshare-edge-arm64.img      the same, uncompressed (sparse)
#   out/smartshare-edge-VERSION-arm64.raucb   the root as a signed update bundle
#   out/keys/                          the update signing keys (made once: keys.sh)
# Needs root and network access to the Debian mirror and PyPI.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
KEYS=${KEYS:-$OUT/keys}
[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (make image does)" >&2; exit 1; }
mkdir -p "$OUT"
STARTED=$(date +%s)
LAST=$STARTED
lap() { local now; now=$(date +%s); echo "build.sh: $1 in $((now - LAST)) s"; LAST=$now; }

NEED=""
for pair in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
            mkfs.vfat:dosfstools mcopy:mtools sfdisk:fdisk mkfs.ext4:e2fsprogs mkimage:u-boot-tools \
            rauc:rauc mksquashfs:squashfs-tools xz:xz-utils file:file; do
    command -v "${pair%%:*}" >/dev/null || NEED="$NEED ${pair#*:}"
done
if [ -n "$NEED" ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $NEED
fi
# arm64 programs (the maintainer scripts, pip, gcc) run in the chroot through qemu-user.
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "build.sh: qemu-aarch64 binfmt is not enabled" >&2; exit 1; }
lap "tools"

"$HERE/keys.sh" "$KEYS"
rm -rf "$OUT/root"
"$HERE/mkroot.sh" --keyring "$KEYS/ca.cert.pem" "$OUT/root"
lap "root tree (mmdebstrap + install.sh under qemu-user)"

"$HERE/mkimage.sh" "$OUT/root" "$OUT"
lap "image"
VERSION=$(cat "$OUT/root/usr/lib/smartshare/version")
BUNDLE=$OUT/smartshare-edge-$VERSION-arm64.raucb
"$HERE/mkbundle.sh" "$OUT/rootfs.ext4" "$VERSION" "$KEYS" "$BUNDLE"
rauc info --keyring="$KEYS/ca.cert.pem" "$BUNDLE" >/dev/null
lap "update bundle"

"$HERE/check-image.sh" "$OUT/smartshare-edge-arm64.img"
lap "checks"
xz -T0 -6 -f -k "$OUT/smartshare-edge-arm64.img"
lap "compression"

echo
echo "build.sh: done in $(( $(date +%s) - STARTED )) s"
ls -lsh "$OUT"/smartshare-edge-arm64.img "$OUT"/smartshare-edge-arm64.img.xz "$BUNDLE"
