"""Watching the pods of a namespace while a cluster test runs: every pod seen (in its last state,
since PipesK8sClient and the run launcher delete theirs), how the scheduler placed one, and
whether the cluster stored a rendered manifest unchanged."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import kubernetes


class PodWatch:
    """`with PodWatch(api, ns) as pods:` polls the namespace's pods twice a second (or every
    `interval` s) for the block; `pods.seen` maps each name to the last state read, and
    `pods.terminated` to its first container's terminated state, kept from when it was first
    read (a step deletes a finished pod a second later)."""

    def __init__(self, api: kubernetes.client.CoreV1Api, namespace: str, interval: float = 0.5):
        self.api, self.namespace, self.interval = api, namespace, interval
        self.seen: dict[str, Any] = {}
        self.running_at: dict[str, float] = {}
        self.terminated: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> PodWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        import time

        while not self._stop.wait(self.interval):
            try:
                pods = self.api.list_namespaced_pod(self.namespace).items
            except kubernetes.client.ApiException:
                continue
            for pod in pods:
                self.seen[pod.metadata.name] = pod
                if pod.status.phase == "Running":
                    self.running_at.setdefault(pod.metadata.name, time.time())
                statuses = pod.status.container_statuses or []
                if statuses and statuses[0].state.terminated is not None:
                    self.terminated.setdefault(pod.metadata.name, statuses[0].state.terminated)

    def with_label(self, key: str, value: str) -> list[Any]:
        return [p for p in self.seen.values() if (p.metadata.labels or {}).get(key) == value]

    def dump(self, api: kubernetes.client.CoreV1Api) -> str:
        """Each pod seen with its phase and the tail of its log: a failure's context."""
        from ml_platform_tests.cluster.local import pod_log

        lines = []
        for name, pod in self.seen.items():
            lines.append(f"--- {name}: {pod.status.phase}")
            try:
                lines.append(pod_log(api, self.namespace, name)[-3000:])
            except kubernetes.client.ApiException as exc:
                lines.append(f"(no log: {exc.reason})")
        return "\n".join(lines)


def events_of(api: kubernetes.client.CoreV1Api, namespace: str, name: str) -> list[Any]:
    """The events of object `name`, oldest first (the kubelet's carry whole seconds, the
    scheduler's microseconds: within a second, Scheduled comes first)."""
    events = api.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")

    def when(event: Any) -> tuple[int, bool]:
        stamp = event.first_timestamp or event.event_time
        return (int(stamp.timestamp()) if stamp else 0, event.reason != "Scheduled")
    return sorted(events.items, key=when)


def describe_scheduling(api: kubernetes.client.CoreV1Api, namespace: str, pod: Any,
                        running_at: float | None = None) -> str:
    """The pod's node, resources and events (Scheduled, Pulled, Started...), as a log block."""
    (container, *_) = pod.spec.containers
    created = pod.metadata.creation_timestamp
    lines = [f"training pod {pod.metadata.name} on node {pod.spec.node_name}, "
             f"phase {pod.status.phase}",
             f"  resources: requests {container.resources.requests}, "
             f"limits {container.resources.limits}"]
    if running_at is not None and created is not None:
        lines.append(f"  creation to Running (seen): {running_at - created.timestamp():.1f}s")
    for event in events_of(api, namespace, pod.metadata.name):
        lines.append(f"  event {event.reason} ({event.source.component if event.source else ''})"
                     f": {event.message}")
    return "\n".join(lines)


def not_kept(rendered: Any, stored: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Paths where `stored` does not carry `rendered`'s value (the cluster may add fields)."""
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            yield path, rendered, stored
            return
        for key, value in rendered.items():
            yield from not_kept(value, stored.get(key), f"{path}.{key}")
    elif isinstance(rendered, list):
        # Admission may only append: DefaultTolerationSeconds adds the not-ready/unreachable
        # tolerations. Every other list must come back as it went.
        appendable = path.endswith(".tolerations")
        if not isinstance(stored, list) or not (
                len(stored) == len(rendered) or (appendable and len(stored) > len(rendered))):
            yield path, rendered, stored
            return
        for i, (a, b) in enumerate(zip(rendered, stored[:len(rendered)], strict=True)):
            yield from not_kept(a, b, f"{path}[{i}]")
    elif rendered != stored:
        yield path, rendered, stored
