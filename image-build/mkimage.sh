#!/bin/bash
# Lays the arm64 root tree (mkroot.sh) out as an SD card image, without loop devices:
#
#   p1  boot  FAT32  256 MiB  Raspberry Pi firmware, U-Boot, boot.scr, the boot state file
#   p2  root A ext4  SLOT_MB  the tree (the first slot to boot)
#   p3  root B ext4  SLOT_MB  empty: the first update is written here
#   p4  data  ext4   DATA_MB  state, config, keys, journal, update records; grows to fill the
#                             card on first boot; shared by both slots, untouched by updates
#
#   mkimage.sh ROOT OUT_DIR      -> OUT_DIR/smartshare-edge-arm64.img and OUT_DIR/rootfs.ext4
#                                   (the root slot image, as update bundles carry it)
set -euo pipefail
ROOT=${1:?usage: mkimage.sh ROOT OUT_DIR}
OUT=${2:?usage: mkimage.sh ROOT OUT_DIR}
DISKID=${DISKID:-5ae5ede0}
BOOT_MB=256
SLOT_MB=${SLOT_MB:-1536}
DATA_MB=${DATA_MB:-128}
IMAGE=$OUT/smartshare-edge-arm64.img
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$OUT"
if awk -v dir="$(realpath "$ROOT")/" 'index($2, dir) == 1 {found = 1} END {exit !found}' /proc/mounts; then
    echo "mkimage.sh: something is mounted under $ROOT (a chroot's /proc?): umount it first" >&2
    exit 1
fi

echo "mkimage.sh: fstab"
cat > "$ROOT/etc/fstab" <<FSTAB
# SmartShare Edge SD image (image-build/mkimage.sh). The root slot is root=PARTUUID=... from
# U-Boot; the data partition is shared by both slots and keeps what must outlive an update.
PARTUUID=$DISKID-01  /boot/firmware       vfat  defaults,noatime,umask=0077  0 2
PARTUUID=$DISKID-04  /data                ext4  defaults,noatime             0 2
/data/smartshare     /var/lib/smartshare  none  bind,x-systemd.requires-mounts-for=/data  0 0
/data/etc/smartshare /etc/smartshare      none  bind,x-systemd.requires-mounts-for=/data  0 0
/data/journal        /var/log/journal     none  bind,x-systemd.requires-mounts-for=/data  0 0
FSTAB

echo "mkimage.sh: boot partition"
mkfs.vfat -F 32 -n BOOT -C "$STAGE/boot.img" $((BOOT_MB * 1024)) >/dev/null
mcopy -s -i "$STAGE/boot.img" "$ROOT"/boot/firmware/* ::/

echo "mkimage.sh: root slot A (the tree, without the boot partition's files)"
mkdir "$STAGE/firmware"
mv "$ROOT"/boot/firmware/* "$STAGE/firmware/"
restore() { mv "$STAGE"/firmware/* "$ROOT/boot/firmware/"; }
trap 'restore; rm -rf "$STAGE"' EXIT
mkfs.ext4 -q -F -L rootA -d "$ROOT" "$OUT/rootfs.ext4" "${SLOT_MB}M"
restore
trap 'rm -rf "$STAGE"' EXIT
mkfs.ext4 -q -F -L rootB "$STAGE/rootB.img" "${SLOT_MB}M"

echo "mkimage.sh: data partition"
DATA=$STAGE/data
JOURNAL_GID=$(awk -F: '$1 == "systemd-journal" {print $3}' "$ROOT/etc/group")
install -d -m 0700 -o 850 -g 850 "$DATA/smartshare"
install -d -m 0755 "$DATA/etc/smartshare" "$DATA/update" "$DATA/rauc"
install -d -m 0700 "$DATA/ssh"
install -d -m 2755 -g "$JOURNAL_GID" "$DATA/journal"
mkfs.ext4 -q -F -L data -d "$DATA" "$STAGE/data.img" "${DATA_MB}M"

echo "mkimage.sh: partition table and assembly"
START=8192  # 4 MiB, in 512-byte sectors
BOOT_S=$((BOOT_MB * 2048)); SLOT_S=$((SLOT_MB * 2048)); DATA_S=$((DATA_MB * 2048))
P2=$((START + BOOT_S)); P3=$((P2 + SLOT_S)); P4=$((P3 + SLOT_S))
rm -f "$IMAGE"
truncate -s $(((P4 + DATA_S) * 512)) "$IMAGE"
sfdisk --quiet "$IMAGE" <<TABLE
label: dos
label-id: 0x$DISKID
start=$START, size=$BOOT_S, type=c, bootable
start=$P2, size=$SLOT_S, type=83
start=$P3, size=$SLOT_S, type=83
start=$P4, size=$DATA_S, type=83
TABLE
for part in "$START:$STAGE/boot.img" "$P2:$OUT/rootfs.ext4" "$P3:$STAGE/rootB.img" \
            "$P4:$STAGE/data.img"; do
    dd if="${part#*:}" of="$IMAGE" bs=1M seek=$((${part%%:*} / 2048)) conv=notrunc,sparse \
       status=none
done
echo "mkimage.sh: $IMAGE ($(du -h --apparent-size "$IMAGE" | cut -f1), $(du -h "$IMAGE" | cut -f1) used)"
