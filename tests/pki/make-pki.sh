#!/usr/bin/env bash
# Makes a throwaway test PKI for the trust-policy tests with nothing but the `openssl` command
# (OpenSSL 3.0, Debian 12). Usage: make-pki.sh OUTDIR [OCSP_URL]
#
# OUTDIR receives (keys are PKCS#8 PEM, certificates PEM; EC P-256 unless the case needs RSA):
#   root.{key,pem}            root CA (self-signed)
#   inter.{key,pem}           intermediate CA issued by root; issues every leaf below
#   ca/                       the intermediate's `openssl ca` database: ca/index.txt is the
#                             index for `openssl ocsp -index`
#   crl.pem, crl.der          the intermediate's CRL (revoked.pem is on it)
#   ocsp.{key,pem}            OCSP responder (extendedKeyUsage OCSPSigning), issued by inter
#   <leaf>.{key,pem}          leaves issued by inter:
#     plain      clientAuth EKU, digitalSignature
#     noeku      no extendedKeyUsage at all
#     sid        Microsoft's SID extension (1.3.6.1.4.1.311.25.2), SID $SID_EXT
#     sanuri     SAN URI tag:microsoft.com,2022-09-14:sid:$SID_SAN
#     revoked    revoked (in crl.pem and in ca/index.txt)
#     expired    valid 2020-01-01 .. 2021-01-01
#     future     valid 2040-01-01 .. 2041-01-01
#     caleaf     basicConstraints CA:TRUE
#     nodigsig   keyUsage keyAgreement only (no digitalSignature)
#     serverauth extendedKeyUsage serverAuth only
#     rsa1024    RSA 1024-bit key
#     rsa2048    RSA 2048-bit key
#     k256       EC key on secp256k1 (not an accepted curve)
#   other-root.{key,pem}      a second root nobody configures
#   other.{key,pem}           a leaf issued by other-root (carries the SID extension, $SID_EXT)
#   selfsid.{key,pem}         a self-signed certificate carrying the SID extension ($SID_EXT)
#   sids.env                  SID_EXT=..., SID_SAN=...
# $MQSEC_PKI_SID_EXT, when set, replaces the default SID_EXT (e.g. the test user's own SID).
# With OCSP_URL, every leaf issued by inter carries authorityInfoAccess OCSP;URI:OCSP_URL.
set -euo pipefail
out=${1:?usage: make-pki.sh OUTDIR [OCSP_URL]}
ocsp_url=${2:-}
SID_EXT=${MQSEC_PKI_SID_EXT:-S-1-5-21-1004336348-1177238915-682003330-1001}
SID_SAN=S-1-5-21-1004336348-1177238915-682003330-1002

mkdir -p "$out/ca/newcerts"
cd "$out"
: > ca/index.txt
echo 1000 > ca/serial
echo 1000 > ca/crlnumber
printf 'SID_EXT=%s\nSID_SAN=%s\n' "$SID_EXT" "$SID_SAN" > sids.env

aia=""
if [[ -n "$ocsp_url" ]]; then aia="authorityInfoAccess = OCSP;URI:$ocsp_url"; fi

cat > ca.cnf <<CNF
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused

[ca]
default_ca = inter_ca
[inter_ca]
dir = $out/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
crlnumber = \$dir/crlnumber
certificate = $out/inter.pem
private_key = $out/inter.key
default_md = sha256
default_days = 30
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[policy_any]
commonName = supplied
organizationName = optional

[v3_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_inter]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[san_sid]
URI.1 = tag:microsoft.com,2022-09-14:sid:$SID_SAN

[sid_seq]
othername = IMPLICIT:0,SEQUENCE:sid_on
[sid_on]
type = OID:1.3.6.1.4.1.311.25.2.1
value = EXPLICIT:0,OCTETSTRING:$SID_EXT
CNF

# The leaves' extension sections, one a line: leaf_section NAME BASIC KEY_USAGE EKU [LINE...]
# writes [v3_NAME] with basicConstraints and keyUsage (critical), extendedKeyUsage EKU ("-":
# none), then each LINE.
leaf_section() {
  local name=$1 basic=$2 usage=$3 eku=$4
  shift 4
  printf '[v3_%s]\nbasicConstraints = critical, %s\nkeyUsage = critical, %s\n' "$name" "$basic" "$usage"
  if [[ $eku != - ]]; then printf 'extendedKeyUsage = %s\n' "$eku"; fi
  printf '%s\n' "$@"
}
key_ids=$'subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid'
sid_ext="1.3.6.1.4.1.311.25.2 = ASN1:SEQUENCE:sid_seq"
{
  leaf_section plain CA:FALSE digitalSignature clientAuth "$key_ids" "$aia"
  leaf_section noeku CA:FALSE digitalSignature - "$key_ids" "$aia"
  leaf_section sid CA:FALSE digitalSignature clientAuth "$key_ids" "$sid_ext" "$aia"
  leaf_section sanuri CA:FALSE digitalSignature clientAuth "$key_ids" "subjectAltName = @san_sid" "$aia"
  leaf_section caleaf CA:TRUE "digitalSignature, keyCertSign" clientAuth "$key_ids" "$aia"
  leaf_section nodigsig CA:FALSE keyAgreement clientAuth "$key_ids" "$aia"
  leaf_section serverauth CA:FALSE digitalSignature serverAuth "$key_ids" "$aia"
  leaf_section ocsp CA:FALSE digitalSignature "critical, OCSPSigning" "$key_ids"
  leaf_section other CA:FALSE digitalSignature clientAuth "$sid_ext"
  leaf_section selfsid CA:FALSE digitalSignature clientAuth "$sid_ext"
} >> ca.cnf

ec_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:"${2:-P-256}" -out "$1.key" 2>/dev/null; }
rsa_key() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:"$2" -out "$1.key" 2>/dev/null; }
q() { "$@" >/dev/null 2>&1 || { echo "make-pki.sh: failed: $*" >&2; "$@"; exit 1; }; }

# Roots and the intermediate.
ec_key root
q openssl req -config ca.cnf -new -x509 -key root.key -subj "/CN=mqsec test root/O=mqsec tests" \
  -days 7300 -extensions v3_root -out root.pem
ec_key inter
q openssl req -config ca.cnf -new -key inter.key -subj "/CN=mqsec test intermediate/O=mqsec tests" \
  -out inter.csr
q openssl x509 -req -in inter.csr -CA root.pem -CAkey root.key -set_serial 2 -days 7300 \
  -extfile ca.cnf -extensions v3_inter -out inter.pem
ec_key other-root
q openssl req -config ca.cnf -new -x509 -key other-root.key -subj "/CN=unconfigured root" \
  -days 7300 -extensions v3_root -out other-root.pem

# Leaves issued by the intermediate with `openssl ca` (so that ca/index.txt knows them).
issue() {  # name extensions-section [openssl ca date options...]
  local name=$1 ext=$2
  shift 2
  q openssl req -config ca.cnf -new -key "$name.key" -subj "/CN=$name/O=mqsec tests" -out "$name.csr"
  q openssl ca -batch -config ca.cnf -notext -extensions "$ext" -in "$name.csr" -out "$name.pem" "$@"
}
for leaf in plain noeku sid sanuri revoked expired future caleaf nodigsig serverauth ocsp; do
  ec_key "$leaf"
done
ec_key k256 secp256k1
rsa_key rsa1024 1024
rsa_key rsa2048 2048
issue plain v3_plain
issue noeku v3_noeku
issue sid v3_sid
issue sanuri v3_sanuri
issue revoked v3_plain
issue expired v3_plain -startdate 20200101000000Z -enddate 20210101000000Z
issue future v3_plain -startdate 20400101000000Z -enddate 20410101000000Z
issue caleaf v3_caleaf
issue nodigsig v3_nodigsig
issue serverauth v3_serverauth
issue rsa1024 v3_plain
issue rsa2048 v3_plain
issue k256 v3_plain
issue ocsp v3_ocsp

# Revocation: the CRL and the OCSP index both say revoked.pem is revoked.
q openssl ca -batch -config ca.cnf -revoke revoked.pem -crl_reason keyCompromise
q openssl ca -batch -config ca.cnf -gencrl -out crl.pem
q openssl crl -in crl.pem -outform DER -out crl.der

# A leaf of the unconfigured root, and a self-signed certificate claiming a SID.
ec_key other
q openssl req -config ca.cnf -new -key other.key -subj "/CN=other/O=elsewhere" -out other.csr
q openssl x509 -req -in other.csr -CA other-root.pem -CAkey other-root.key -set_serial 3 -days 30 \
  -extfile ca.cnf -extensions v3_other -out other.pem
ec_key selfsid
q openssl req -config ca.cnf -new -x509 -key selfsid.key -subj "/CN=sid/O=mqsec tests" -days 30 \
  -extensions v3_selfsid -out selfsid.pem
rm -f ./*.csr
