#!/bin/sh
# Creates a test CA and server certificates in DIR (default: a new temp dir) and
# prints DIR. Every certificate names localhost, 127.0.0.1 and ::1 unless noted:
#   ca.pem                  the CA (trust this one)
#   valid.{pem,key}         signed by the CA, valid 365 days
#   expiring.{pem,key}      signed by the CA, expires in 3 days
#   expired.{pem,key}       signed by the CA, expired 10 days ago
#   wronghost.{pem,key}     signed by the CA, for wrong.example.org only
#   selfsigned.{pem,key}    self-signed, valid 365 days
#   client.{pem,key}        a client certificate signed by the CA
set -eu
DIR=${1:-$(mktemp -d /tmp/wacht-certs-XXXXXX)}
mkdir -p "$DIR"
cd "$DIR"
SAN="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/CN=wacht test CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

mkdir -p ca/newcerts
: > ca/index.txt
echo 1000 > ca/serial
cat > ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = $DIR/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
certificate = $DIR/ca.pem
private_key = $DIR/ca.key
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
CNF

# name start end san
sign() {
  openssl req -new -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" \
    -subj "/CN=$1" -addext "$4" 2>/dev/null
  openssl ca -batch -config ca.cnf -in "$1.csr" -out "$1.pem" -notext \
    -startdate "$2" -enddate "$3" 2>/dev/null
  rm -f "$1.csr"
}
d() { date -u -d "$1" +%y%m%d%H%M%SZ; }

sign valid "$(d '-1 day')" "$(d '+365 days')" "$SAN"
sign expiring "$(d '-1 day')" "$(d '+3 days')" "$SAN"
sign expired "$(d '-40 days')" "$(d '-10 days')" "$SAN"
sign wronghost "$(d '-1 day')" "$(d '+365 days')" "subjectAltName=DNS:wrong.example.org"
sign client "$(d '-1 day')" "$(d '+365 days')" "extendedKeyUsage=clientAuth"
openssl req -x509 -newkey rsa:2048 -nodes -keyout selfsigned.key -out selfsigned.pem \
  -days 365 -subj "/CN=localhost" -addext "$SAN" 2>/dev/null
echo "$DIR"
