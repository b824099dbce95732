# shellcheck shell=bash
# The broker's TLS certificates with openssl (1.1.1 or later), for deploy/azure/deploy.sh and
# docker-compose.yml alike: a small private CA, a key with its signing request where the key
# is to live, and the CA's signature on that request. Sourced, not run.
#
# EC P-256 keys: small (a request fits in a run command's output, which Azure cuts at 4 KB),
# fast to verify, and accepted by RabbitMQ (Erlang's ssl) and by our services (rustls).
# The CA decides the names a certificate carries (subjectAltName), not the request: a
# request's own extensions are ignored.

# How long a broker certificate lasts, and when it is due for renewal.
readonly BROKER_CERTIFICATE_DAYS=${BROKER_CERTIFICATE_DAYS:-365}
readonly BROKER_CERTIFICATE_RENEW_DAYS=${BROKER_CERTIFICATE_RENEW_DAYS:-30}
# The CA outlives many broker certificates: replacing it means giving every client the new one.
readonly CA_DAYS=${CA_DAYS:-3650}

# DIR/ca.key (0600) and DIR/ca.pem: a CA that may sign server certificates and nothing below.
make_ca() { # dir common-name
  local dir=$1
  (
    umask 077
    mkdir -p "$dir"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 \
      -days "$CA_DAYS" -subj "/CN=$2" \
      -addext basicConstraints=critical,CA:TRUE,pathlen:0 \
      -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout "$dir/ca.key.new" -out "$dir/ca.pem.new" 2>/dev/null
    mv "$dir/ca.key.new" "$dir/ca.key"
  )
  chmod 0644 "$dir/ca.pem.new"
  mv "$dir/ca.pem.new" "$dir/ca.pem"
}

# A new private key (0600) at KEY unless one is there, and a signing request for it on stdout.
key_and_request() { # key common-name
  if [[ ! -s $1 ]]; then
    (
      umask 077
      openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.new" 2>/dev/null
      mv "$1.new" "$1"
    )
  fi
  openssl req -new -sha256 -key "$1" -subj "/CN=$2"
}

# The certificate of the request on stdin, signed by CA_DIR's CA, for NAMES (comma-separated
# subjectAltName entries, e.g. "IP:10.20.1.10,DNS:coc-vm1"), on stdout: a server certificate
# only (it cannot sign, and clients would refuse it as a client's).
sign_request() { # ca-dir names
  openssl x509 -req -CA "$1/ca.pem" -CAkey "$1/ca.key" -set_serial "0x$(openssl rand -hex 16)" \
    -sha256 -days "$BROKER_CERTIFICATE_DAYS" \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" "subjectAltName=$2") \
    2>/dev/null
}

# True if CERT is missing, unreadable, or ends within BROKER_CERTIFICATE_RENEW_DAYS.
due_for_renewal() { # cert
  [[ -s $1 ]] || return 0
  ! openssl x509 -in "$1" -noout -checkend $((BROKER_CERTIFICATE_RENEW_DAYS * 86400)) >/dev/null 2>&1
}
