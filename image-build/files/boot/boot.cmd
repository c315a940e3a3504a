# SmartShare Edge A/B boot script (compiled to boot.scr with mkimage -T script).
#
# The boot state is the text file smartshare-boot.env on this (the boot) partition, shared with
# Linux (edge/update/bootstate.py, RAUC's bootloader backend on the gateway):
#   BOOT_ORDER    the root slots to try, first to last ("A B")
#   BOOT_A_LEFT   tries slot A has left (0..3), BOOT_B_LEFT the same for B
# Each boot spends one try of the first slot in BOOT_ORDER that has any, and writes the count
# back before Linux starts, so a slot that hangs or crashes still pays for its try. Linux marks a
# healthy slot good (3 tries again); a slot that fails 3 times is passed over and the other slot
# boots. When no slot has a try left, both get 3 again (never a bricked gateway).
# The same script runs on the Raspberry Pi (U-Boot rpi_arm64, mmc) and on QEMU's virt board
# (U-Boot qemu_arm64, virtio), which is how tests/test_bootloader.py runs it.

setenv statefile smartshare-boot.env
test -n "${devtype}" || setenv devtype mmc
test -n "${devnum}" || setenv devnum 0
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
if load ${devtype} ${devnum}:1 ${kernel_addr_r} ${statefile}; then
    env import -t ${kernel_addr_r} ${filesize} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv rootpart
setenv raucslot
for slot in ${BOOT_ORDER}; do
    if test -n "${rootpart}"; then
        setenv rootpart ${rootpart}
    elif test "${slot}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
        setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
        setenv rootpart 2
        setenv raucslot A
    elif test "${slot}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
        setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
        setenv rootpart 3
        setenv raucslot B
    fi
done
if test -z "${rootpart}"; then
    echo "SmartShare: no root slot has a try left; both get 3 again"
    setenv BOOT_A_LEFT 3
    setenv BOOT_B_LEFT 3
fi
env export -t ${kernel_addr_r} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${devtype} ${devnum}:1 ${kernel_addr_r} ${statefile} ${filesize}
if test -z "${rootpart}"; then
    reset
fi

# The Raspberry Pi firmware hands over its device tree with its command line; QEMU a bare one.
setenv fwargs console=ttyAMA0
if test -n "${fdt_addr}"; then
    setenv fdt ${fdt_addr}
else
    setenv fdt ${fdtcontroladdr}
fi
fdt addr ${fdt} && fdt get value fwargs /chosen bootargs
part uuid ${devtype} ${devnum}:${rootpart} rootuuid
setenv bootargs "${fwargs} root=PARTUUID=${rootuuid} rootfstype=ext4 rootwait rw rauc.slot=${raucslot} panic=10"
echo "SmartShare: booting slot ${raucslot}, tries left A=${BOOT_A_LEFT} B=${BOOT_B_LEFT}, order ${BOOT_ORDER}"
echo "SmartShare: bootargs ${bootargs}"

# A slot that cannot be loaded is a failed try: reset, and the count decides.
load ${devtype} ${devnum}:${rootpart} ${kernel_addr_r} /boot/Image || reset
load ${devtype} ${devnum}:${rootpart} ${ramdisk_addr_r} /boot/initrd.img || reset
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt}
reset
