#!/usr/bin/env bash
# The Debian packages the local cluster (cluster-up, build.sh) and `make image` need, installed
# with apt when missing (a fresh CI machine); nothing to do when all are there.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $EUID -eq 0 ]] || die "install-deps.sh needs root (apt-get install)"
PACKAGES=(golang-1.19-go dpkg-dev rsync gcc make etcd-server containerd runc
          containernetworking-plugins dnsmasq-base iptables conntrack iproute2 openssl curl
          nftables buildah debootstrap)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$package")
done
if (( ${#missing[@]} )); then
  log "apt-get install ${missing[*]}"
  apt-get -qq update
  DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends "${missing[@]}"
else
  log "every package the cluster needs is installed"
fi
