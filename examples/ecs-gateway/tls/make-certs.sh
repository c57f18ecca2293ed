#!/usr/bin/env bash
# The gateway's TLS: a private CA for acme-prod's intentgate and the gateway's certificate for
# intentgate-gateway.internal (the Cloud Map / private DNS name the sidecars dial).
#
#   examples/ecs-gateway/tls/make-certs.sh      (needs openssl and the aws CLI, acme-prod admin)
#
# Writes tls/ca.pem (public: the image adds it to the system trust store, so the sidecars trust
# the gateway), and stores the gateway's certificate and key in Secrets Manager, which the task's
# tls-init container writes to /run/intentgate-tls at start. The CA key stays outside the
# repository (and so outside every image), in $INTENTGATE_PKI_DIR (default
# ~/.intentgate-pki/acme-prod): keep it offline, or use AWS Private CA instead.
set -euo pipefail
cd "$(dirname "$0")"
region=us-east-1
name=intentgate-gateway.internal
private="${INTENTGATE_PKI_DIR:-$HOME/.intentgate-pki/acme-prod}"
mkdir -p "$private" && chmod 700 "$private"

if [[ ! -f "$private/ca.key" ]]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1825 \
        -subj "/O=acme-prod/CN=acme-prod intentgate CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$private/ca.key" -out ca.pem
fi

openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/O=acme-prod/CN=$name" -keyout "$private/server.key" -out "$private/server.csr"
openssl x509 -req -in "$private/server.csr" -CA ca.pem -CAkey "$private/ca.key" -CAserial "$private/ca.srl" -CAcreateserial \
    -days 90 -out "$private/server.pem" \
    -extfile <(printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n' "$name")

for part in cert key; do
    file="$private/server.pem"; [[ $part == key ]] && file="$private/server.key"
    if aws secretsmanager describe-secret --region "$region" --secret-id "intentgate-gateway/tls-$part" >/dev/null 2>&1; then
        aws secretsmanager put-secret-value --region "$region" \
            --secret-id "intentgate-gateway/tls-$part" --secret-string "file://$file" >/dev/null
    else
        aws secretsmanager create-secret --region "$region" \
            --name "intentgate-gateway/tls-$part" --secret-string "file://$file" >/dev/null
    fi
done
rm -f "$private/server.csr" "$private/server.key"
echo "wrote $(pwd)/ca.pem; the certificate for $name (90 days) and its key are in Secrets Manager"
