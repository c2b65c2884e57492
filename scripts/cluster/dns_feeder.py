"""Feed the local cluster's DNS: write the Services as a hosts file for dnsmasq, and reload it.

The cluster has no CoreDNS (Debian does not package it); dnsmasq answers `*.cluster.local`
from this file. Every two seconds: `<svc>.<ns>.svc.cluster.local` -> the ClusterIP, or for a
headless Service the pod IPs behind it (and `<hostname>.<svc>.<ns>.svc.cluster.local` for pods
that set a hostname), as the Kubernetes DNS specification says. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DOMAIN = "svc.cluster.local"


def records(services: list[dict], endpoints: list[dict]) -> list[tuple[str, str]]:
    """(ip, name) pairs for the hosts file."""
    by_key = {(e["metadata"]["namespace"], e["metadata"]["name"]): e for e in endpoints}
    out: list[tuple[str, str]] = []
    for svc in services:
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        fqdn = f"{name}.{ns}.{DOMAIN}"
        spec = svc.get("spec", {})
        cluster_ip = spec.get("clusterIP")
        if cluster_ip and cluster_ip != "None":
            out.append((cluster_ip, fqdn))
            continue
        not_ready = spec.get("publishNotReadyAddresses", False)
        for subset in by_key.get((ns, name), {}).get("subsets") or []:
            addresses = list(subset.get("addresses") or [])
            if not_ready:
                addresses += subset.get("notReadyAddresses") or []
            for address in addresses:
                out.append((address["ip"], fqdn))
                if address.get("hostname"):
                    out.append((address["ip"], f"{address['hostname']}.{fqdn}"))
    return sorted(set(out))


def snapshot(kubectl: str, kubeconfig: str) -> str | None:
    try:
        done = subprocess.run([kubectl, "--kubeconfig", kubeconfig, "get", "services,endpoints",
                               "--all-namespaces", "-o", "json"], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:  # keep serving the last records
        print(f"dns_feeder: {exc}", file=sys.stderr, flush=True)
        return None
    if done.returncode != 0:
        print(f"dns_feeder: kubectl failed: {done.stderr.strip()}", file=sys.stderr, flush=True)
        return None
    items = json.loads(done.stdout)["items"]
    services = [i for i in items if i["kind"] == "Service"]
    endpoints = [i for i in items if i["kind"] == "Endpoints"]
    return "".join(f"{ip} {name}\n" for ip, name in records(services, endpoints))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--hosts", type=Path, required=True)
    parser.add_argument("--dnsmasq-pidfile", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()
    while True:
        text = snapshot(args.kubectl, args.kubeconfig)
        if text is not None and (not args.hosts.exists() or args.hosts.read_text() != text):
            tmp = args.hosts.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(args.hosts)
            try:  # SIGHUP: dnsmasq re-reads its addn-hosts files
                os.kill(int(args.dnsmasq_pidfile.read_text()), signal.SIGHUP)
            except (OSError, ValueError) as exc:
                print(f"dns_feeder: cannot reload dnsmasq: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
