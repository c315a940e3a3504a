#!/bin/bash
# A signed update bundle: a RAUC bundle (verity format: every block checked as it is read)
# holding a root filesystem image for the slot class "rootfs". RAUC on the gateway refuses it
# unless it is signed by a key its keyring (/etc/rauc/keyring.pem) trusts and its compatible
# matches.
#
#   mkbundle.sh ROOTFS.ext4 VERSION KEYS_DIR OUT.raucb     (KEYS_DIR as made by keys.sh)
set -euo pipefail
ROOTFS=${1:?usage: mkbundle.sh ROOTFS.ext4 VERSION KEYS_DIR OUT.raucb}
VERSION=${2:?version}
KEYS=${3:?keys dir}
OUT=${4:?output}
COMPATIBLE=${COMPATIBLE:-smartshare-edge-rpi-arm64}
CONTENT=$(mktemp -d)
trap 'rm -rf "$CONTENT"' EXIT

cp --sparse=always "$ROOTFS" "$CONTENT/rootfs.ext4"
cat > "$CONTENT/manifest.raucm" <<MANIFEST
[update]
compatible=$COMPATIBLE
version=$VERSION
description=SmartShare Edge root filesystem
build=$(date -u +%Y%m%dT%H%M%SZ)

[bundle]
format=verity

[image.rootfs]
filename=rootfs.ext4
MANIFEST
rm -f "$OUT"
rauc bundle --cert="$KEYS/signer.cert.pem" --key="$KEYS/signer.key.pem" \
    --keyring="$KEYS/ca.cert.pem" "$CONTENT" "$OUT"
