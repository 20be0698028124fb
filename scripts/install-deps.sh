#!/usr/bin/env bash
# Installs the Debian packages that building, testing and benchmarking PacketScope need.
# Idempotent: installs only what is missing. Runs as root (Debian 12 / Ubuntu).
set -euo pipefail

packages=(
  clang-16 llvm-16 libbpf-dev bpftool   # make generate (bpf2go)
  iproute2 iptables iputils-ping        # test hosts in network namespaces, drops on purpose
  iperf3 hping3 tcpreplay tcpdump       # traffic, floods, capture replay
  slowhttptest                          # slowloris (e2e slow-connection defense)
  nmap                                  # port scans (e2e TestPortScanDefense)
  netsniff-ng                           # trafgen: PACKET_MMAP line-rate floods (make bench)
  jq curl                               # benchmark scripts, stack test
  systemd util-linux                    # systemd-analyze verify; nsenter and setpriv
  prometheus                            # promtool: check metrics, check/test rules
  prometheus-alertmanager               # end-to-end defense loop
  xdp-tools                             # xdp-filter, the benchmark's point of comparison
  qemu-system-x86 busybox-static xz-utils # make test-kernels: other kernels under qemu, the guest's shell, modules
)
# make test-kernels also needs a linux-image-6.1.0-*-cloud-amd64-unsigned package: scripts/test-kernels.sh
# downloads the newest one Debian serves into /var/cache/packetscope-kernels (unpacked, not installed).

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing Debian packages (${missing[*]}); run as root: sudo $0" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
