#!/bin/bash
# Builds the gateway's root tree in DIR: Debian bookworm by mmdebstrap (qemu-user runs the
# arm64 maintainer scripts on another host), then install.sh inside it.
#
#   mkroot.sh --keyring CERT.pem [--fast] DIR
#
# Default: the SD image's tree (arm64, kernel, initramfs, the Cython twins compiled in the
# chroot, the boot partition's files staged in DIR/boot/firmware). --fast: the CI tree that
# tests/test_image_tree.py checks: the host's architecture, no kernel or bootloader, the
# pure-Python build; the same install.sh. Needs root. MIRROR overrides the Debian mirror.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
MIRROR=${MIRROR:-http://deb.debian.org/debian}
FAST=0
KEYRING=""
while [ $# -gt 1 ]; do
    case "$1" in
        --fast) FAST=1; shift ;;
        --keyring) KEYRING=$2; shift 2 ;;
        *) echo "mkroot.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
DIR=${1:?usage: mkroot.sh --keyring CERT.pem [--fast] DIR}
[ -s "$KEYRING" ] || { echo "mkroot.sh: --keyring CERT.pem (the update signer's CA) is required" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "mkroot.sh: run as root (mmdebstrap, chroot)" >&2; exit 1; }

BASE=systemd,systemd-sysv,systemd-resolved,systemd-timesyncd,dbus,udev,mosquitto,python3
BASE=$BASE,python3-venv,libgomp1,ca-certificates,openssh-server,iproute2,rauc
BASE=$BASE,rauc-service,netbase,e2fsprogs
if [ "$FAST" = 1 ]; then
    ARCH=$(dpkg --print-architecture)
    PACKAGES=$BASE
    BUILD_EXT=0
else
    ARCH=arm64
    PACKAGES=$BASE,linux-image-arm64,initramfs-tools,kmod,dosfstools,cloud-guest-utils
    PACKAGES=$PACKAGES,gcc,libc6-dev,python3-dev
    BUILD_EXT=1
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# The working tree: tracked and new files, modified or not (what .gitignore hides left out).
git -C "$REPO" ls-files -z --cached --others --exclude-standard | tar -C "$REPO" --null -T - -czf "$WORK/src.tar.gz"
cp "$KEYRING" "$WORK/keyring.pem"
VERSION="$(cd "$REPO" && python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')+g$(git -C "$REPO" describe --always --dirty)"
export WORK FAST BUILD_EXT HERE VERSION

# The chroot reaches the mirror and PyPI with the build host's DNS (systemd-resolved's stub is not
# running in a chroot); the image's own resolv.conf is put back at the end. install.sh runs in a
# clean environment.
hooks=(
    --customize-hook='mkdir -p "$1/tmp/smartshare-src" && tar -C "$1/tmp/smartshare-src" -xzf "$WORK/src.tar.gz"'
    --customize-hook='cp "$WORK/keyring.pem" "$1/tmp/keyring.pem"; cp /etc/ssl/certs/ca-certificates.crt "$1/tmp/build-ca.crt"'
    --customize-hook='mv "$1/etc/resolv.conf" "$1/etc/resolv.conf.image"; cp -L /etc/resolv.conf "$1/etc/resolv.conf"'
)
if [ "$FAST" = 0 ]; then
    hooks+=(--customize-hook='"$HERE/bootfiles.sh" "$1"')
fi
hooks+=(
    --customize-hook='chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root BUILD_EXT="$BUILD_EXT" VERSION="$VERSION" sh /tmp/smartshare-src/image-build/install.sh'
    --customize-hook='mv "$1/etc/resolv.conf.image" "$1/etc/resolv.conf"'
    --customize-hook='rm -rf "$1/tmp/smartshare-src" "$1/tmp/keyring.pem" "$1/tmp/build-ca.crt"'
)

started=$(date +%s)
mmdebstrap --mode=root --arch="$ARCH" --variant=minbase --components=main,non-free-firmware \
    --include="$PACKAGES" "${hooks[@]}" bookworm "$DIR" "$MIRROR"
# mmdebstrap unmounts the chroot's /proc, /sys and /dev, but a copy of such a mount in another
# mount namespace (a container started meanwhile, e.g. systemd-nspawn) makes umount fail with
# "target is busy" and leaves it mounted, and mkfs.ext4 -d would then copy /proc: detach them.
awk -v dir="$(realpath "$DIR")/" 'index($2, dir) == 1 {print $2}' /proc/mounts | sort -r |
    while read -r mnt; do umount --lazy "$mnt"; done
echo "mkroot.sh: $DIR ($ARCH$([ "$FAST" = 1 ] && echo ', fast')) in $(( $(date +%s) - started )) s"
