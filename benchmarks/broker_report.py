"""What the broker benchmark prints and notes: the summary table, and short notes on what
bounds each figure, read from the CPU shares measured beside it."""

from __future__ import annotations

from benchmarks.paced_latency import QUANTILES


def _share(cpu: dict | None, name: str, what: str = "cores_busy") -> float | None:
    return ((cpu or {}).get(name) or {}).get(what)


def _pct(v: float | None) -> str:
    return "?" if v is None else f"{v:.0%}"


def _others(cpu: dict | None) -> str:
    other = (cpu or {}).get("other_processes_cores_busy")
    if other is None:
        return ""
    if other >= 0.25:
        return (f" Processes outside this benchmark kept {other:.2f} cores busy meanwhile "
                f"(shared machine): this figure is lower than a quiet machine would give.")
    return f" Other processes: {other:.2f} cores busy meanwhile."


def _broker_starved(cpu: dict | None) -> str:
    wait = _share(cpu, "broker", "waiting_for_cpu")
    if wait is None or wait < 0.5:
        return ""
    return (f" The broker's threads waited for a CPU {wait:.2f} thread-seconds per second "
            f"(it has the non-worker core(s), shared with this process): the broker side "
            f"bounds this figure too.")


def limits(result: dict) -> dict:
    """Short notes on what bounds each figure, from the CPU shares measured alongside."""
    e2e, notes = result["end_to_end"], {}
    w, b = e2e["worker"], e2e["baseline"]
    wc, bc = _share(w.get("cpu"), "worker"), _share(b.get("cpu"), "baseline")
    wq = _share(w.get("cpu"), "worker", "waiting_for_cpu") or 0.0
    bq = _share(b.get("cpu"), "baseline", "waiting_for_cpu") or 0.0
    broker_w, broker_b = _share(w.get("cpu"), "broker"), _share(b.get("cpu"), "broker")
    full = sum(n for k, n in result.get("worker_log", {}).items() if "producer buffer full" in k)
    broker = f", the broker {_pct(broker_w)}" if broker_w is not None else ""
    text = (f"From first to last decision the worker ran {_pct(wc)} of the time and waited "
            f"for a CPU {_pct(wq)} of the time{broker}; "
            f"{w.get('cpu_ms_per_event', '?')} ms of CPU per event. ")
    if wc is not None and wc + wq >= 0.85:
        text += ("It wanted its core all along: CPU-bound. The figure is the per-event cost "
                 "of the worker's path (Faust stream and table, the engine with every "
                 "detector, JSON of state and decisions, a decision and a changelog record "
                 "produced per event, plus alerts and commands)"
                 + (", and the share of its core that other processes took" if wq >= 0.1
                    else "") + ".")
    else:
        text += ("Not CPU-bound: the worker waited, on Faust's producer (its sends and table "
                 "changelog writes wait for broker acks"
                 + (f"; its log has {full} 'producer buffer full' warnings" if full else "")
                 + ") or on fetches.")
    if not (wc is not None and wc + wq >= 0.85):
        text += _broker_starved(w.get("cpu"))
    notes["worker_throughput"] = text + _others(w.get("cpu"))
    broker = f", the broker {_pct(broker_b)}" if broker_b is not None else ""
    text = (f"The baseline ran {_pct(bc)} of the time and waited for a CPU {_pct(bq)}"
            f"{broker}; {b.get('cpu_ms_per_event', '?')} ms of CPU per event. ")
    if bc is not None and bc + bq >= 0.85:
        text += ("CPU-bound: aiokafka's per-record consume and produce path and orjson"
                 + (", and the share of its core that other processes took" if bq >= 0.1
                    else "") + ".")
    else:
        text += ("Not CPU-bound: it waited on the broker (fetch and produce round trips; "
                 "the broker shares the other core(s) with this measuring process).")
    if (b.get("seconds_first_to_last") or 0) < 2:
        text += " The run lasted under 2 s: too short for a steady rate."
    notes["baseline_throughput"] = text + _broker_starved(b.get("cpu")) + _others(b.get("cpu"))
    if "faust_floor" in e2e:
        notes["faust_floor_throughput"] = _floor_note(e2e["faust_floor"], w)
    lat = result.get("latency")
    if lat and "worker" in lat and "baseline" in lat:
        lw, lb = lat["worker"], lat["baseline"]
        ms = [x.get("cpu_ms_per_event") for x in (lw, lb)]
        text = (
            "Both sides pay the same round trips through the broker: this process's produce "
            "(acks all), the consumer's fetch, its produce, this process's fetch. The echo "
            "baseline shows what they cost here; the rest of the worker's figure is its own: "
            "per-event work, waiting behind events already queued, Faust's producer buffer "
            "and commits, model snapshots. ")
        if ms[0] is not None:
            text += (f"Paced, the worker spent {ms[0]} ms of CPU per event against "
                     f"{w.get('cpu_ms_per_event', '?')} ms when it ran flat out on the "
                     f"pre-loaded topic (smaller batches cost more per event), and was busy "
                     f"{_pct(_share(lw.get('cpu'), 'worker'))} of the time. ")
        mp = _share(lw.get("cpu"), "measuring_process")
        bw = _share(lw.get("cpu"), "broker", "waiting_for_cpu")
        if mp is not None:
            text += (f"This process (driver and reader) used {_pct(mp)} of a core beside the "
                     f"broker" + (f", whose threads waited for a CPU {bw:.2f} thread-seconds "
                                  f"per second" if bw is not None else "") + ". ")
        notes["latency"] = text.strip() + _others(lw.get("cpu"))
    return notes


def _floor_note(f: dict, w: dict) -> str:
    """The Faust floor's figure, and what of the worker's CPU per event lies above it."""
    fc = _share(f.get("cpu"), "faust_floor")
    fq = _share(f.get("cpu"), "faust_floor", "waiting_for_cpu") or 0.0
    broker = _share(f.get("cpu"), "broker")
    parts = [f"The Faust floor ran {_pct(fc)} of the time and waited for a CPU {_pct(fq)}"
             + (f", the broker {_pct(broker)}" if broker is not None else "")
             + f"; {f.get('cpu_ms_per_event', '?')} ms of CPU per event: Faust's per-message "
               "path (fetch, stream, acks, commits) and aiokafka's, with the worker's batches "
               "and outbox and one record produced per event."]
    loop, span = f.get("loop") or {}, f.get("seconds_first_to_last")
    if loop.get("batches"):
        parts.append(f"Its loop took {loop['batches']:,} batches of {loop['mean_batch']:g} "
                     f"events on average and spent {loop['seconds_awaiting_send']:g} s"
                     + (f" ({loop['seconds_awaiting_send'] / span:.0%} of the run)" if span
                        else "") + " awaiting the broker's acks of its outputs.")
    if fc is not None and fc + fq < 0.85:
        parts.append("Not CPU-bound: it waited on the broker, so its rate is bounded by those "
                     "round trips rather than its CPU, and the ratio worker/Faust floor "
                     "flatters the worker: compare CPU ms/event.")
        parts.append(_broker_starved(f.get("cpu")))
    wms, fms = w.get("cpu_ms_per_event"), f.get("cpu_ms_per_event")
    if wms is not None and fms is not None:
        parts.append(f"The worker's {wms} ms per event is {wms - fms:.3f} ms above it: the "
                     "engine with every detector, contract checks, task state in and out of "
                     "the table, and the records beyond one per event (changelog, alerts, "
                     "commands).")
    if (f.get("seconds_first_to_last") or 0) < 2:
        parts.append("The run lasted under 2 s: too short for a steady rate.")
    parts.append(_others(f.get("cpu")))
    return " ".join(p.strip() for p in parts if p.strip())


def _fmt(v, spec: str = ",.0f") -> str:
    return "-" if v is None else format(v, spec)


def summary_table(result: dict) -> str:
    e2e = result["end_to_end"]
    m = result["machine"]
    cpu = result["placement"]["worker_and_baselines_cpu"]
    trace = result["trace"]
    lines = [(f"broker benchmark at {result['commit']}, {m.get('cpus')} CPUs "
              f"({m.get('cpu_model', '?')}), {m.get('mem_total_mib', '?')} MiB; "
              f"worker and baselines on CPU {cpu}"),
             "",
             (f"1. end to end, {e2e['events']:,} events pre-loaded "
              + (f"(trace file {trace['path']})" if trace["source"] == "file" else
                 f"({trace['source']} trace, {trace['active']} tasks active)"))]
    head = (f"{'':<28}{'events/s':>10}{'seconds':>9}{'records':>9}{'expected':>10}"
            f"{'core':>7}{'CPU ms/event':>14}")
    lines += [head, "-" * len(head)]
    for label, key, cpu_name in (("intentwatch worker", "worker", "worker"),
                                 ("Faust floor (decode only)", "faust_floor", "faust_floor"),
                                 ("aiokafka echo (baseline)", "baseline", "baseline")):
        r = e2e.get(key)
        if r is None:  # the Faust floor was skipped
            continue
        busy = _share(r.get("cpu"), cpu_name)
        lines.append(f"{label:<28}{_fmt(r['events_per_second']):>10}"
                     f"{_fmt(r.get('seconds_first_to_last'), '.1f'):>9}{r['records']:>9,}"
                     f"{r['expected']:>10,}"
                     f"{'-' if busy is None else f'{busy:.0%}':>7}"
                     f"{_fmt(r.get('cpu_ms_per_event'), '.3f'):>14}")
    lines.append(f"ratio worker/baseline: {_fmt(e2e.get('ratio_worker_to_baseline'), '.3f')} "
                 f"(the goal: 0.5)")
    if "faust_floor" in e2e:
        lines.append(
            f"ratio worker/Faust floor: {_fmt(e2e.get('ratio_worker_to_faust_floor'), '.3f')}; "
            f"Faust floor/baseline: {_fmt(e2e.get('ratio_faust_floor_to_baseline'), '.3f')}")
    lat = result.get("latency")
    if lat:
        lines += ["", (f"2. latency at {lat['rate']:,.0f} events/s, {lat['events']:,} events "
                       f"({lat['timed_actions']:,} actions timed)")]
        cols = ["count", *(n for n, _ in QUANTILES), "max"]
        head = f"{'send -> readable (ms)':<28}" + "".join(f"{c:>9}" for c in cols)
        lines += [head, "-" * len(head)]
        rows = [("worker: decision", lat["worker"]["decision"]),
                ("worker: revoke command", lat["worker"].get("revoke_command", {})),
                ("baseline: echo record", lat["baseline"]["decision"])]
        for label, s in rows:
            if not s.get("count"):
                lines.append(f"{label:<28}{0:>9}")
                continue
            lines.append(f"{label:<28}{s['count']:>9,}" +
                         "".join(f"{s[c]:>9.2f}" for c in cols[1:]))
        lines.append(f"missing: worker {lat['worker']['missing']}, baseline "
                     f"{lat['baseline']['missing']}; rate achieved: worker "
                     f"{_fmt(lat['worker']['rate_achieved'])}, baseline "
                     f"{_fmt(lat['baseline']['rate_achieved'])} events/s")
    lines += ["", f"total {result['seconds']} s"]
    return "\n".join(lines)
