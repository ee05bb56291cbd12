"""The `intentwatch` command. Every long command shows progress on stderr and ends with a
summary; an input that cannot be used is named with its line.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import orjson

from monitor.catalog import Catalog
from monitor.config import CONFIG_ENV, ConfigError, Settings, load_settings
from monitor.contracts import SPECS, json_schema
from monitor.errors import InputError
from monitor.policy import Policy
from monitor.profiles import PROFILES, build_engine
from monitor.replay import FIRST_BAD_LINES, count_lines, read_lines, replay

from .kafka_security import BrokerAccessError
from .progress import Progress, report_bad_lines

DATA = Path(__file__).resolve().parents[1] / "monitor" / "data"
SAMPLE_TRACE = DATA / "sample_trace.jsonl"
SAMPLE_CATALOG = DATA / "sample_catalog.json"

EXIT_CODES = """exit codes:
  0    success
  1    the run failed (broker unreachable, a worker or a benchmark failed)
  2    bad usage, bad configuration, or an input file that is missing or unusable
       (the message names the file, and the line where it applies)
  75   worker only: its table recovery stalled (recovery_stall_seconds); start it again
  130  interrupted (Ctrl-C)"""


def use_event_loop(choice: str) -> str:
    """Install the event loop policy the worker runs on ("auto": uvloop when it is installed);
    return the loop's name. Must run before anything creates a loop."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return "asyncio"
    # What mode.loop.use("uvloop") does, minus its once-per-process import side effect.
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def cmd_worker(args, settings: Settings) -> int:
    from faust.worker import Worker

    from . import models
    from .app import create_app, worker_key
    from .produce import ensure_topics

    try:
        loop = use_event_loop(args.loop)
    except ImportError:
        print("intentwatch: --loop uvloop: uvloop is not installed", file=sys.stderr)
        return 2
    print(f"intentwatch: event loop: {loop}", file=sys.stderr, flush=True)
    # Create every topic with the configured partitions, so the inputs are co-partitioned
    # with the task table whichever side starts first.
    asyncio.run(ensure_topics(settings, settings.topics()))
    asyncio.run(ensure_topics(settings, [models.topic_name(settings)], partitions=1,
                              config={"cleanup.policy": "compact"}))
    snapshot = asyncio.run(models.load_snapshot(settings, worker_key(settings)))
    app = create_app(settings, snapshot)
    worker = Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT, then exits the process
    return 0


def cmd_replay(args, settings: Settings) -> int:
    catalog = Catalog.load(args.catalog) if args.catalog else (
        Catalog.load(settings.catalog) if settings.catalog else Catalog())
    engine = build_engine(args.profile, catalog, Policy(settings.alert_at, settings.revoke_at),
                          allowed_lateness=settings.allowed_lateness_seconds)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    dead = Path(args.dead_letters) if args.dead_letters else out.with_suffix(".deadletters.jsonl")
    progress = Progress("replay", "lines", count_lines(args.trace))
    with open(out, "wb") as decisions_fh, open(dead, "wb") as dead_fh:
        summary = replay(read_lines(args.trace), engine, settings.max_event_bytes,
                         decisions_fh, dead_fh, progress)
    progress.finish()
    if not args.quiet:
        for d in summary["decisions"]:
            print(format_decision(d))
    report_bad_lines(args.trace, summary["bad_lines"], summary["dead_letters"], where=dead)
    print(f"replayed {summary['events']} events: {summary['verdicts']}, "
          f"{summary['dead_letters']} dead letters ({dead}); decisions in {out}")
    return 0


def format_decision(d: dict) -> str:
    what = d["tool"] or d["event_type"]
    line = f"{d['verdict']:<6} risk={d['risk']:.2f} task={d['task_id']} {what}"
    if d["phase"]:
        line += f" ({d['phase']})"
    if d["reasons"]:
        line += " | " + "; ".join(r["message"] for r in d["reasons"])
    if d["command"]:
        line += f" | REVOKE {d['command']['credential_ids']} id={d['command']['command_id']}"
    return line


def cmd_produce(args, settings: Settings) -> int:
    from aiokafka.errors import KafkaError

    from .produce import produce

    progress = Progress("produce", "records", count_lines(args.trace))
    check = LineCheck(settings.max_event_bytes)
    try:
        counts = asyncio.run(produce(check(read_lines(args.trace)), settings, progress))
    except BrokerAccessError as exc:
        print(f"intentwatch: produce to {settings.bootstrap} failed: {exc}", file=sys.stderr)
        return 1
    except (KafkaError, OSError) as exc:
        print(f"intentwatch: produce to {settings.bootstrap} failed: {type(exc).__name__}: "
              f"{exc}", file=sys.stderr)
        return 1
    progress.finish()
    report_bad_lines(args.trace, check.first_bad, check.bad)
    print(f"produced {sum(counts.values())} records: {counts}"
          + (f"; {check.bad} of them are not valid events (sent anyway: the worker "
             f"dead-letters them)" if check.bad else ""))
    return 0


class LineCheck:
    """Passes a trace's lines through unchanged, noting those the worker will dead-letter
    (produce sends them all: a trace with bad records is how the dead-letter path is tested)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bad, self.first_bad = max_bytes, 0, []

    def __call__(self, lines):
        from monitor.contracts import ContractError, decode

        for number, raw in lines:
            try:
                decode(raw, self.max_bytes)
            except ContractError as err:
                self.bad += 1
                if len(self.first_bad) < FIRST_BAD_LINES:
                    self.first_bad.append((number, err.code, err.message))
            yield number, raw


def cmd_demo(args, settings: Settings) -> int:
    from .demo import run_demo

    return run_demo(SAMPLE_TRACE, SAMPLE_CATALOG, keep=args.keep_running)


def cmd_import(args, settings: Settings) -> int:
    from monitor.importers.agentdojo import import_runs

    progress = Progress("import agentdojo", "run files")
    summary = import_runs(args.runs_dir, args.tasks, args.output, args.suite_version, progress)
    progress.finish()
    for path, reason in summary["first_skipped"]:
        print(f"intentwatch: {path}: skipped: {reason}", file=sys.stderr)
    print(f"imported {summary['imported']} runs ({summary['events']} events) into "
          f"{args.output}: {dict(summary['by_kind'])}; skipped {dict(summary['skipped'])}")
    return 0


def cmd_eval(args, settings: Settings) -> int:
    from monitor.evaluation import evaluate
    from monitor.report import summary_table, write_report

    progress = Progress("eval", "lines")
    try:
        figures = evaluate(args.events, args.labels, args.catalog, args.profile, progress)
    except ValueError as exc:  # unknown profile, bad catalog
        print(f"intentwatch: {exc}", file=sys.stderr)
        return 2
    progress.finish()
    report_bad_lines(args.events, figures["events"]["first_bad"],
                     sum(figures["events"]["dead_letters"].values()))
    report_bad_lines(args.labels, figures["labels"]["first_bad"], figures["labels"]["bad_lines"])
    print(summary_table(figures))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"figures in {args.json}")
    if args.report:
        print(f"report in {write_report(figures, args.report)}")
    return 0


def cmd_schemas(args, settings: Settings) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for etype in SPECS:
        path = out / f"{etype}.schema.json"
        path.write_bytes(orjson.dumps(json_schema(etype), option=orjson.OPT_INDENT_2) + b"\n")
        print(path)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intentwatch",
        description="Runtime monitor that keeps AI agents inside the intent they declared. "
                    "Settings: defaults < a TOML file < INTENTWATCH_* environment variables "
                    "(docs/configuration.md, intentwatch config show).",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE",
                        help=f"TOML settings file (default ${CONFIG_ENV}); the environment "
                             "overrides it")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="run the Faust worker (live monitoring on Kafka)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--loop", default="auto", choices=["auto", "uvloop", "asyncio"],
                   help="event loop (default auto: uvloop when installed, else asyncio's)")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("replay", help="run a recorded trace through the engine, no broker")
    p.add_argument("trace", help="trace file, one JSON event per line")
    p.add_argument("-o", "--output", default="out/decisions.jsonl",
                   help="decision records (JSON lines), default out/decisions.jsonl")
    p.add_argument("--dead-letters", help="where bad lines go (default beside --output)")
    p.add_argument("--catalog", help="tool catalog JSON (default INTENTWATCH_CATALOG)")
    p.add_argument("--profile", default="full", choices=PROFILES,
                   help="detector line-up (default full; allowlist is the baseline)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("produce", help="publish a recorded trace to the input topics")
    p.add_argument("trace", help="trace file, one JSON event per line")
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser("demo", help="start a local broker and worker, catch a hijacked agent")
    p.add_argument("--keep-running", action="store_true",
                   help="leave broker and worker up until Ctrl-C")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("import", help="turn recorded agent runs into intentwatch events")
    isub = p.add_subparsers(dest="source", required=True)
    p = isub.add_parser("agentdojo", help="AgentDojo runs tree -> events.jsonl + labels.jsonl")
    p.add_argument("runs_dir", help="runs/ folder of AgentDojo")
    p.add_argument("--tasks", required=True, help="tasks.json shipped beside the runs")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("--suite-version", default="v1",
                   help="suite version of runs without benchmark_version (default v1)")
    p.set_defaults(func=cmd_import)
    from .ingest import add_import_parsers
    add_import_parsers(isub)  # otel, mcp

    p = sub.add_parser("eval", help="replay labelled runs; recall and false alarms vs baseline")
    p.add_argument("events", help="events, one JSON event per line")
    p.add_argument("labels", help="labels, one JSON object per run (see import agentdojo)")
    p.add_argument("--catalog", help="tool catalog JSON (default: the AgentDojo catalog)")
    p.add_argument("--profile", default="full", help="detector profile to evaluate (default full)")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--report", help="write an HTML report (index.html) into this folder")
    p.set_defaults(func=cmd_eval)

    from .enforcer import add_enforce_parser
    add_enforce_parser(sub)

    from .gateway import add_gateway_parser
    add_gateway_parser(sub)

    from .otel_bridge import add_otel_bridge_parser
    add_otel_bridge_parser(sub)

    from benchmarks.bench import add_bench_parser
    add_bench_parser(sub)

    from .config_cmd import add_config_parser
    add_config_parser(sub)

    p = sub.add_parser("schemas", help="write the JSON Schemas of the event contracts")
    p.add_argument("-o", "--output", default="docs/schemas")
    p.set_defaults(func=cmd_schemas)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = None
    if not getattr(args, "loads_settings", False):
        try:
            settings = load_settings(args.config)[0]
        except ConfigError as exc:
            print(f"intentwatch: configuration error: {exc}", file=sys.stderr)
            return 2
    try:
        return args.func(args, settings)
    except InputError as exc:
        print(f"intentwatch: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        what = f"{exc.strerror}: {exc.filename}" if exc.filename else str(exc)
        print(f"intentwatch: {what}", file=sys.stderr)
        return 2
    except BrokerAccessError as exc:
        print(f"intentwatch: cannot use the Kafka broker: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("intentwatch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
