"""Pushes admitted alerts to an Alertmanager-compatible webhook (INTENTWATCH_ALERTMANAGER_URL),
off the decision path: the agent queues, a background task posts in small batches."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import aiohttp
from prometheus_client import Counter

from monitor.alerting import AlertGate, alertmanager_payload
from monitor.metrics import REGISTRY

log = logging.getLogger("intentwatch.alerting")
PUSHED = Counter("intentwatch_alerts_pushed_total",
                 "Alerts pushed to the Alertmanager webhook, by outcome", ["outcome"],
                 registry=REGISTRY)
QUEUE_LIMIT = 10_000


class AlertForwarder:
    def __init__(self, url: str, gate: AlertGate | None = None):
        self.url = url
        self.gate = gate or AlertGate()
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_LIMIT)

    def offer(self, decision: dict) -> None:
        """Called for every decision on the hot path: cheap, never blocks."""
        if not self.gate.admit(decision, time.time()):
            if decision["verdict"] != "allow":
                PUSHED.labels("suppressed").inc()
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        try:
            self.queue.put_nowait(alertmanager_payload(decision, now))
        except asyncio.QueueFull:
            PUSHED.labels("dropped_queue_full").inc()

    async def run(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while True:
                batch = [await self.queue.get()]
                while not self.queue.empty() and len(batch) < 100:
                    batch.append(self.queue.get_nowait())
                try:
                    async with session.post(self.url, json=batch) as resp:
                        outcome = "sent" if resp.status < 300 else "failed"
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("alert webhook failed: %s", exc)
                    outcome = "failed"
                PUSHED.labels(outcome).inc(len(batch))
