"""The Faust floor: a Faust app that does only what the worker's loop does around the engine.

The aiokafka baseline (benchmarks.echo_baseline) defines the goal, but it pays none of Faust's
per-message path; this app pays all of it and nothing else, so the worker's figure can be read
as Faust floor + engine. It is the worker's own app (streams.app.new_app: same consumer,
producer and rebalance settings, from the same INTENTWATCH_* variables) with one agent on the
same input topics, raw bytes, and the decision agent's loop: `noack_take` batches, the
rebalance-generation filter, each record made Faust's current event, then a plain orjson
decode in place of the pipeline, one small record per event added to a streams.outbox.Outbox,
one `send()` per batch, an ack per event. Left out, so not in the floor: the task table and
its changelog, the registry, the acks agent, model snapshots, and the 1 to 2 records the
worker sends beyond one per event (changelog, alerts, commands).

    python -m benchmarks.faust_floor --output TOPIC    (settings: the worker's environment)

The output records are the echo baseline's ({"event_id", "partition", "offset"}, keyed like
the input), so the benchmark reads both the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import faust
import orjson
from faust.worker import Worker

from benchmarks.processes import start_pinned
from monitor.config import Settings
from streams.app import as_current_events, input_topics, new_app
from streams.cli import use_event_loop
from streams.outbox import Outbox


def event_id(value: bytes) -> str | None:
    """The decode that stands in for the engine (the echo baseline's: orjson, the id)."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None   # still one output: the reader counts one record per input record
    return event.get("event_id") if isinstance(event, dict) else None


def create_floor_app(settings: Settings, output: str) -> faust.App:
    app = new_app(settings)
    # What bounds the floor when it does not use its whole core: batch sizes, and the time the
    # loop spends waiting for the broker to take a batch's outputs (served at /stats). Faust's
    # noack_take stops filling its buffer while the loop holds a batch, that wait included, so
    # a batch is what Faust's path delivers within batch_wait, often far under batch_max.
    stats = {"batches": 0, "events": 0, "seconds_awaiting_send": 0.0}

    @app.agent(input_topics(app, settings))
    async def floor(stream):
        producer = await app.maybe_start_producer()
        outbox = Outbox(producer._ensure_producer())  # (aiokafka's, as the worker takes it)
        # As the worker's track_topics: aiokafka refreshes metadata only for topics it tracks.
        await asyncio.gather(*(outbox.producer.client.add_topic(t) for t in (
            output, settings.topic_intents, settings.topic_actions)))
        async for batch in stream.noack_take(settings.batch_max, within=settings.batch_wait):
            generation = app.consumer_generation_id
            events = [e for e in batch if e.message.generation_id == generation]
            ids = [event_id(value) for value, _key, _lane in as_current_events(events)]
            # Like the worker's publish(): a record's output goes to the record's partition
            # when the output topic is co-partitioned with the inputs.
            copartitioned = outbox.partitions(output) == outbox.partitions(settings.topic_actions)
            for event, eid in zip(events, ids, strict=True):
                m = event.message
                outbox.add(output, m.key, orjson.dumps(
                    {"event_id": eid, "partition": m.partition, "offset": m.offset}),
                    m.partition if copartitioned else None)
            t0 = time.perf_counter()
            await outbox.send()
            stats["seconds_awaiting_send"] += time.perf_counter() - t0
            stats["batches"] += 1
            stats["events"] += len(events)
            for event in events:
                await stream.ack(event)

    @app.page("/healthz")  # how the benchmark knows it is up, as for the worker
    async def health_view(web, request):
        return web.json({"status": "ok", "app_id": settings.app_id})

    @app.page("/stats")
    async def stats_view(web, request):
        return web.json(stats)

    return app


def start(env: dict, log_path: Path, cpu: int, output: str):
    """The floor as its own process on one CPU, like the benchmark's worker. Its web server
    listens on INTENTWATCH_WEB_PORT of `env`: give it a port of its own (two Faust apps on one
    host collide on the default 6066)."""
    return start_pinned(["-m", "benchmarks.faust_floor", "--output", output], env, log_path,
                        cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faust_floor",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="topic of the one record per event")
    parser.add_argument("--loglevel", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                        help="event loop, as the worker's --loop (default: uvloop if installed)")
    args = parser.parse_args(argv)
    loop = use_event_loop(args.loop)
    print(f"faust floor: event loop: {loop}", file=sys.stderr, flush=True)
    app = create_floor_app(Settings.from_env(), args.output)
    Worker(app, loglevel=args.loglevel, quiet=True).execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
