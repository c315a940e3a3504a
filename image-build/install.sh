#!/bin/sh
# Installs SmartShare Edge into a Debian root tree. It runs inside the tree (chroot), from the
# source copied to /tmp/smartshare-src by mkroot.sh, for the SD image (arm64, the Cython twins
# compiled: BUILD_EXT=1) and for the CI tree that tests/test_image_tree.py checks (the host's
# architecture, the pure-Python build: BUILD_EXT=0). Everything else is the same.
#
#   the node's user (fixed uid 850), the project in /opt/smartshare/venv (smartshare on PATH),
#   the units installed and enabled, Debian's own mosquitto.service masked, SSH off (on with an
#   authorized_keys file on the boot partition), DHCP on Ethernet, the journal and the hardware
#   watchdog, and the A/B update files (RAUC's config, keyring and bootloader backend).
set -eu

SRC=/tmp/smartshare-src
FILES=$SRC/image-build/files
VENV=/opt/smartshare/venv
BUILD_EXT=${BUILD_EXT:-1}
VERSION=${VERSION:-unknown}
DISKID=${DISKID:-5ae5ede0}
export DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
# Behind a TLS-inspecting proxy the build host's CA bundle is what reaches PyPI.
if [ -s /tmp/build-ca.crt ]; then export PIP_CERT=/tmp/build-ca.crt; fi

step() { echo "install.sh: $*"; }

step "the node's user"
install -D -m 0644 "$FILES/sysusers.d/smartshare.conf" /usr/lib/sysusers.d/smartshare.conf
systemd-sysusers /usr/lib/sysusers.d/smartshare.conf

step "the project in $VENV (compiled twins: $BUILD_EXT)"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir --quiet setuptools wheel
if [ "$BUILD_EXT" = 1 ]; then
    "$VENV/bin/pip" install --no-cache-dir --quiet cython
    SMARTSHARE_REQUIRE_EXT=1 "$VENV/bin/pip" install --no-cache-dir --quiet \
        --no-build-isolation "$SRC"
    "$VENV/bin/python" -c "import edge._fast as f; assert f.compiled_modules(), 'no twins'"
    "$VENV/bin/pip" uninstall --yes --quiet cython
else
    "$VENV/bin/pip" install --no-cache-dir --quiet --no-build-isolation "$SRC"
fi
"$VENV/bin/pip" uninstall --yes --quiet wheel
ln -sf "$VENV/bin/smartshare" /usr/local/bin/smartshare
install -D -m 0644 "$SRC/README.md" /usr/share/doc/smartshare-edge/README.md
install -D -m 0644 "$SRC/image-build/README.md" /usr/share/doc/smartshare-edge/IMAGE.md

step "units"
install -m 0644 "$SRC"/systemd/*.service "$FILES/systemd/smartshare-ssh.service" \
    "$FILES/systemd/smartshare-grow-data.service" /usr/lib/systemd/system/
install -D -m 0755 "$FILES/systemd/ssh-switch" /usr/lib/smartshare/ssh-switch
install -D -m 0755 "$FILES/systemd/grow-data" /usr/lib/smartshare/grow-data
systemctl enable smartshare-firstboot.service smartshare-mosquitto.service \
    smartshare-node.service smartshare-health.service smartshare-ssh.service \
    smartshare-grow-data.service
# Our broker runs on the node's files; Debian's would hold port 1883.
systemctl mask mosquitto.service

step "ssh off until asked for; no host keys in the image"
systemctl disable ssh.service
rm -f /etc/ssh/ssh_host_*
install -D -m 0644 "$FILES/ssh/smartshare.conf" /etc/ssh/sshd_config.d/smartshare.conf

step "network, clock, journal, watchdog"
install -D -m 0644 "$FILES/network/20-wired.network" /etc/systemd/network/20-wired.network
install -D -m 0644 "$FILES/systemd/wait-online.conf" \
    /etc/systemd/system/systemd-networkd-wait-online.service.d/smartshare.conf
systemctl enable systemd-networkd.service systemd-resolved.service systemd-timesyncd.service
install -D -m 0644 "$FILES/systemd/journald.conf" /etc/systemd/journald.conf.d/smartshare.conf
install -D -m 0644 "$FILES/systemd/watchdog.conf" /etc/systemd/system.conf.d/smartshare.conf

step "A/B updates: RAUC and its bootloader backend"
install -D -m 0755 "$FILES/rauc/rauc-backend" /usr/lib/smartshare/rauc-backend
echo "$VERSION" > /usr/lib/smartshare/version
install -d -m 0755 /etc/rauc
sed "s/@DISKID@/$DISKID/g" "$FILES/rauc/system.conf" > /etc/rauc/system.conf
chmod 0644 /etc/rauc/system.conf
install -m 0644 /tmp/keyring.pem /etc/rauc/keyring.pem

step "mount points"
install -d -m 0755 /data /boot/firmware
install -d -m 0700 -o smartshare -g smartshare /var/lib/smartshare
install -d -m 0755 /etc/smartshare

if [ "$BUILD_EXT" = 1 ]; then
    step "build tools out"
    apt-get purge --yes --quiet --autoremove gcc libc6-dev python3-dev >/dev/null
fi
step "clean"
passwd --lock root >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /root/.cache /tmp/build-ca.crt
step "done"
