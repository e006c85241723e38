#!/usr/bin/env bash
# Installs the Debian 12 packages mqsec needs to build, test and run its demo.
# Safe to run again: it installs only what is missing. Needs root or sudo.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  lld   # a faster linker for our scripts' builds (MQSEC_LINKER); the default linker works too
  libp11-kit-dev libssl-dev libsqlite3-dev libtomlplusplus-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  softhsm2 opensc libp11-dev libengine-pkcs11-openssl openssl
  clang-format python3 gnuplot-nox
  scdoc   # the man pages (docs/man/*.scd)
  libasan8 libubsan1 libtsan2   # sanitizer runtimes of GCC 12 (scripts/sanitize.sh)
  # remote queues: the AMQP 1.0 client, and RabbitMQ for tests and the demo (scripts/broker.sh
  # runs a private node; on systemd hosts the package also starts a system broker, unused)
  libqpid-proton-cpp12-dev python3-qpid-proton rabbitmq-server
  # the virtual smartcard test bed (tests/card): pcscd, vpcd's reader driver, our PIV emulator
  pcscd vsmartcard-vpcd python3-cryptography
  # the .NET tests (tests/dotnet): C# programs compiled with mcs, run with Mono (about 25 MB)
  mono-mcs mono-runtime
  # Microsoft's mq.h and transact.h as MinGW-w64 ships them (headers only, about 5 MB): the SDK
  # sample tests (tests/sdk) check our headers' names against them
  mingw-w64-common
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "mqsec: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
echo "mqsec: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
