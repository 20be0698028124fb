#!/usr/bin/env bash
# Boots other kernels than the host's under qemu (TCG: nested KVM hangs on
# these machines) and runs PacketScope's live smoke tests inside them
# (e2e/kernels, plus the bpf package's feature probes). Exits non-zero when a
# guest test fails, the guest hangs or a kernel cannot be had.
#
#   scripts/test-kernels.sh    # Debian 12's newest 6.1 (stock) and 6.12 cloud kernels
#   KERNEL_PACKAGES="linux-image-6.1.0-57-cloud-amd64-unsigned" scripts/test-kernels.sh
#
# Kernel packages are downloaded with apt-get and unpacked (dpkg-deb -x) into
# $KERNEL_CACHE, never installed: the host's /boot stays as it is. The guest
# has no network (-nic none); its traffic runs over a veth pair between two
# namespaces inside it.
set -euo pipefail

cd "$(dirname "$0")/.."
KERNEL_CACHE=${KERNEL_CACHE:-/var/cache/packetscope-kernels}
GUEST_TIMEOUT=${GUEST_TIMEOUT:-900} # seconds per kernel, boot to poweroff: a hang guard (a run takes 30-120 s on an idle machine, 400 s under a load of 30)
GO=${GO:-go}

log() { echo "test-kernels: $*" >&2; }
die() { log "$*"; exit 1; }

for tool in qemu-system-x86_64 busybox apt-get dpkg-deb ldd xz; do
  command -v "$tool" >/dev/null || die "$tool is missing: run scripts/install-deps.sh (as root)"
done
[ -f /bin/busybox ] || die "/bin/busybox is missing: install busybox-static"
file_is_static() { ! ldd "$1" >/dev/null 2>&1; }
file_is_static /bin/busybox || die "/bin/busybox is not static: install busybox-static"

# newest PATTERN names the newest kernel package Debian serves whose name matches PATTERN.
newest() {
  apt-cache search --names-only "$1" 2>/dev/null | awk '{print $1}' | sort -V | tail -1
}

# The floor (Debian 12's stock 6.1: no TCX, no BPF netfilter, no kfuncs for
# casts) and Debian 12's newer 6.12 (all of them, the TCX path), so that both
# variants of every load-time choice run on a kernel that is not the host's.
kernel_patterns=(
  '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$'
  '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$'
)
if [ -z "${KERNEL_PACKAGES:-}" ]; then
  for pat in "${kernel_patterns[@]}"; do
    pkg=$(newest "$pat")
    if [ -z "$pkg" ]; then
      apt-get update -qq
      pkg=$(newest "$pat")
    fi
    [ -n "$pkg" ] || die "no package matching $pat in the apt lists"
    KERNEL_PACKAGES+="${KERNEL_PACKAGES:+ }$pkg"
  done
fi

# fetch_kernel PKG: unpack PKG into $KERNEL_CACHE/PKG once; prints that directory.
fetch_kernel() {
  local pkg=$1 dir="$KERNEL_CACHE/$1"
  if [ ! -f "$dir/.complete" ]; then
    mkdir -p "$KERNEL_CACHE"
    local dl
    dl=$(mktemp -d "$KERNEL_CACHE/dl.XXXXXX")
    chmod 755 "$dl" # apt's _apt user downloads into it
    if ! (cd "$dl" && apt-get download -qq "$pkg" >/dev/null 2>&1); then
      apt-get update -qq
      (cd "$dl" && apt-get download -qq "$pkg" >/dev/null) || die "apt-get download $pkg failed"
    fi
    rm -rf "$dir"
    dpkg-deb -x "$dl"/*.deb "$dir"
    rm -rf "$dl"
    # Module dependencies for the whole tree, once: the initramfs takes a closure of them.
    local kver
    kver=$(ls "$dir/lib/modules")
    busybox depmod -b "$dir" "$kver"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

work=$(mktemp -d /tmp/packetscope-kernels.XXXXXX)
trap 'rm -rf "$work"' EXIT

log "building static binaries"
export CGO_ENABLED=0
$GO build -o "$work/bin/packetscope" ./cmd/packetscope
$GO vet -tags kernelsmoke ./e2e/kernels
$GO test -c -tags kernelsmoke -o "$work/bin/kernels.test" ./e2e/kernels
$GO test -c -o "$work/bin/bpf.test" ./bpf

# copy_with_libs FILE DESTDIR: FILE into DESTDIR of the root, with the shared libraries it needs.
copy_with_libs() {
  local root=$1 file=$2 destdir=$3
  install -D -m 755 "$file" "$root$destdir/$(basename "$file")"
  ldd "$file" | grep -o '/[^ ]*' | while read -r lib; do
    install -D -m 755 "$lib" "$root$lib"
  done
}

# build_initramfs KDIR OUT: the guest's root filesystem as an uncompressed cpio
# (no decompression under emulation).
build_initramfs() {
  local kdir=$1 out=$2 root="$work/root"
  local kver
  kver=$(ls "$kdir/lib/modules")
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,tests,lib/modules}
  mkdir -p "$root/var" && ln -s /run "$root/var/run"
  install -m 755 /bin/busybox "$root/bin/busybox"
  # Only the applets init and the tests call: `ip` and `tc` must be iproute2's.
  for a in sh mount umount mkdir cat echo sleep poweroff modprobe insmod depmod uname ln kill ls dmesg; do
    ln -s busybox "$root/bin/$a"
  done
  for a in modprobe insmod depmod poweroff; do ln -sf /bin/busybox "$root/sbin/$a"; done
  copy_with_libs "$root" /usr/sbin/ip /usr/sbin
  copy_with_libs "$root" /usr/sbin/tc /usr/sbin
  ln -s /usr/sbin/ip "$root/sbin/ip"
  ln -s /usr/sbin/tc "$root/sbin/tc"
  install -m 755 "$work/bin/packetscope" "$work/bin/kernels.test" "$work/bin/bpf.test" "$root/tests/"
  ln -s /tests/packetscope "$root/usr/bin/packetscope"

  # The modules the tests need (veth, clsact, cls_bpf, what iproute2 and the
  # agent may ask for) with their dependencies, from modules.dep.
  local mdir="$kdir/lib/modules/$kver" want=(veth sch_ingress cls_bpf xfrm_user nfnetlink)
  mkdir -p "$root/lib/modules/$kver"
  cp "$mdir"/modules.{order,builtin,builtin.modinfo} "$root/lib/modules/$kver/"
  local m line f
  for m in "${want[@]}"; do
    line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$mdir/modules.dep") || die "module $m not in $kver"
    for f in ${line/:/}; do
      install -D -m 644 "$mdir/$f" "$root/lib/modules/$kver/$f"
    done
  done
  # Newer Debian kernels ship xz-compressed modules, which busybox modprobe
  # hands to the kernel as they are (and the kernel refuses): unpack them.
  find "$root/lib/modules" -name '*.ko.xz' -exec xz -d {} +
  busybox depmod -b "$root" "$kver"

  cat >"$root/init" <<'EOF'
#!/bin/sh
# PID 1 of the kernel smoke test: mount, load modules, run the tests, power off.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /run/netns
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
echo /sbin/modprobe >/proc/sys/kernel/modprobe
for m in veth sch_ingress cls_bpf xfrm_user nfnetlink; do modprobe $m; done
/usr/sbin/ip link set lo up
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp TMPDIR=/tmp PACKETSCOPE_BIN=/tests/packetscope CI=true
echo "KERNEL-SMOKE: BEGIN $(uname -r)"
cd /tests
# The bpf tests that say something about this kernel (the variant tests load
# the whole stack twice, minutes under emulation, and test the host's 6.18).
./bpf.test -test.v -test.count=1 -test.run 'TestFeaturesMatchKernelVersion|TestLoadErrorNamesProgram|TestReleaseAtLeast'
rc1=$?
./kernels.test -test.v -test.count=1 -test.timeout=6m
rc2=$?
echo "KERNEL-SMOKE: EXIT $rc1 $rc2"
poweroff -f
EOF
  chmod 755 "$root/init"
  (cd "$root" && find . | busybox cpio -o -H newc >"$out" 2>/dev/null)
}

failed=0
summary=()
for pkg in $KERNEL_PACKAGES; do
  kdir=$(fetch_kernel "$pkg")
  kver=$(ls "$kdir/lib/modules")
  vmlinuz="$kdir/boot/vmlinuz-$kver"
  build_initramfs "$kdir" "$work/initramfs-$kver.cpio"
  console="$work/console-$kver.log"
  # A guest that dies before its init starts the tests is a boot failure of
  # the emulation, not a verdict: TCG once met an int3 Oops in the 6.12
  # kernel's own timer code 1.4 s into boot. Such a boot is retried, twice
  # at most; a guest that started the tests is never retried.
  for attempt in 1 2 3; do
    log "booting $kver under qemu (TCG), timeout ${GUEST_TIMEOUT}s, attempt $attempt"
    start=$(date +%s)
    set +e
    timeout --foreground -k 10 "$GUEST_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 2048 \
      -nographic -no-reboot -nic none \
      -kernel "$vmlinuz" -initrd "$work/initramfs-$kver.cpio" \
      -append "console=ttyS0 panic=-1 oops=panic loglevel=4 rdinit=/init" </dev/null >"$console" 2>&1
    qrc=$?
    set -e
    secs=$(( $(date +%s) - start ))
    if tr -d '\r' <"$console" | grep -qE 'KERNEL-SMOKE: (BEGIN|EXIT)|=== RUN'; then
      break
    fi
    log "$kver died before its tests began (qemu exit $qrc, ${secs}s); console (last 30 lines):"
    tr -d '\r' <"$console" | tail -30 >&2
  done
  # The guest's verdicts, as go test -v printed them on the serial console.
  tr -d '\r' <"$console" | grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|PASS$|FAIL$|ok |KERNEL-SMOKE:|\s+[a-z_]+_test\.go:[0-9]+:)' || true
  verdict=$(tr -d '\r' <"$console" | grep -E '^KERNEL-SMOKE: EXIT' | tail -1 || true)
  if [ "$verdict" = "KERNEL-SMOKE: EXIT 0 0" ] && ! tr -d '\r' <"$console" | grep -qE '^\s*--- (FAIL|SKIP)'; then
    summary+=("$kver: pass in ${secs}s")
  else
    failed=1
    if [ $qrc -eq 124 ]; then
      summary+=("$kver: FAIL: the guest did not power off within ${GUEST_TIMEOUT}s")
    else
      summary+=("$kver: FAIL (${verdict:-no verdict}, qemu exit $qrc) in ${secs}s")
    fi
    log "console of $kver (last 80 lines):"
    tr -d '\r' <"$console" | tail -80 >&2
  fi
done

for s in "${summary[@]}"; do log "$s"; done
exit $failed
