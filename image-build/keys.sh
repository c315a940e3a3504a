#!/bin/bash
# A development signing key for update bundles, in DIR (made once, kept): ca.cert.pem (the
# keyring the image trusts: /etc/rauc/keyring.pem), signer.cert.pem and signer.key.pem (what
# `rauc bundle` signs with). For production make your own CA, keep its key offline, and build
# the image with it (KEYS=dir make image); rauc resign moves a bundle to another key.
set -euo pipefail
DIR=${1:?usage: keys.sh DIR}
[ -s "$DIR/ca.cert.pem" ] && [ -s "$DIR/signer.key.pem" ] && exit 0
mkdir -p "$DIR"
chmod 0700 "$DIR"
cd "$DIR"
cat > openssl.cnf <<'CNF'
[ca_ext]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[signer_ext]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/O=SmartShare Edge/CN=SmartShare Edge development update CA" \
    -keyout ca.key.pem -out ca.cert.pem -extensions ca_ext -config openssl.cnf 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/O=SmartShare Edge/CN=SmartShare Edge development update signer" \
    -keyout signer.key.pem -out signer.csr.pem 2>/dev/null
openssl x509 -req -in signer.csr.pem -CA ca.cert.pem -CAkey ca.key.pem -CAcreateserial \
    -days 3650 -extfile openssl.cnf -extensions signer_ext -out signer.cert.pem 2>/dev/null
chmod 0600 ./*.key.pem
rm -f signer.csr.pem openssl.cnf
echo "keys.sh: development update keys in $DIR"
