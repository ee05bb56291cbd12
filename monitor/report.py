"""Evaluation results for people: a text summary table and an HTML report whose plots are
inline SVG drawn here (no plotting library). Both read only the figures dict of
`monitor.evaluation.evaluate`, so a report can be rebuilt from a saved --json file."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path

from .policy import Policy

COLUMNS = (("recall", "recall"), ("late_recall", "late recall"),
           ("benign_revoke_rate", "benign revoked"), ("alert_rate", "benign alerted"),
           ("failed_attack_revoke_rate", "failed att. revoked"),
           ("injection_as_user_revoke_rate", "as-user revoked"))
ENGINE_COLOR, BASELINE_COLOR = "#1f6fb4", "#e8821e"
BENIGN_COLOR, ATTACK_COLOR, HARM_COLOR = "#4c9a5a", "#d1495b", "#b5172e"


def _rows(fig: dict) -> list[tuple[str, dict]]:
    return ([("all", fig)] + [(f"suite {k}", v) for k, v in fig["per_suite"].items()]
            + [(f"model {k}", v) for k, v in fig["per_model"].items()])


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _harm_runs(block: dict) -> int:
    return block["counts"]["successful_attacks_with_harmful_call"]


def _warnings(fig: dict) -> list[str]:
    out = []
    for who, dead in ((fig["profile"], fig["events"]["dead_letters"]),
                      (fig["baseline_profile"], fig["events"]["baseline_dead_letters"])):
        if dead:
            out.append(f"WARNING: {sum(dead.values())} of {fig['events']['lines']} lines were "
                       f"not decided by {who}: {dead}")
    labels = fig["labels"]
    if labels["bad_lines"] or labels["without_events"] or labels["runs_without_label"]:
        out.append(f"WARNING: labels: {labels['bad_lines']} bad lines, "
                   f"{labels['without_events']} labelled runs with no events, "
                   f"{labels['runs_without_label']} runs with no label (all left out)")
    return out


# --- text ------------------------------------------------------------------------------------

def summary_table(fig: dict) -> str:
    """The figures as a fixed-width table: one row per slice, each cell engine/baseline (%)."""
    eng, base = fig["profile"], fig["baseline_profile"]
    width = max(len(name) for name, _ in _rows(fig)) + 2
    head = f"{'':<{width}}{'runs':>6}{'benign':>7}{'attacks':>8}" + "".join(
        f"{title:>20}" for _, title in COLUMNS)
    title = (f"intentwatch eval: profile {eng} vs baseline {base}; each cell is {eng}/{base} "
             f"in % of runs; attacks = successful attacks with a harmful call")
    lines = [title, "", head, "-" * len(head)]
    for name, block in _rows(fig):
        cells = "".join(f"{_pct(block[key]) + '/' + _pct(block['baseline'][key]):>20}"
                        for key, _ in COLUMNS)
        lines.append(f"{name:<{width}}{sum(block['runs'].values()):>6}"
                     f"{block['runs'].get('benign', 0):>7}{_harm_runs(block):>8}{cells}")
    lines.append("")
    lines += [f"note: {n}" for n in fig["notes"]]
    lines += _warnings(fig)
    lines.append(f"{fig['events']['lines']} event lines, {sum(fig['runs'].values())} runs "
                 f"in {fig['seconds']} s")
    return "\n".join(lines)


# --- SVG -------------------------------------------------------------------------------------

W, H = 560, 220
LEFT, RIGHT, TOP, BOTTOM = 46, 14, 40, 40


def _svg(body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
            f'viewBox="0 0 {W} {H}" role="img" aria-label="{escape(label)}" '
            f'font-family="sans-serif" font-size="11">' + "".join(body) + "</svg>")


def _frame(x_max: float, y_max: float, x_ticks, y_ticks, x_label: str, y_label: str):
    """Scales data -> pixels and the axes, ticks and grid as SVG elements."""
    def sx(v):
        return LEFT + v * (W - LEFT - RIGHT) / (x_max or 1)

    def sy(v):
        return H - BOTTOM - v * (H - TOP - BOTTOM) / (y_max or 1)

    x_axis = f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" '
    y_axis = f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" '
    els = [x_axis + 'stroke="#333"/>', y_axis + 'stroke="#333"/>']
    for v, text in y_ticks:
        els.append(f'<line x1="{LEFT}" y1="{sy(v):.1f}" x2="{W - RIGHT}" y2="{sy(v):.1f}" '
                   f'stroke="#ddd"/><text x="{LEFT - 4}" y="{sy(v) + 4:.1f}" '
                   f'text-anchor="end">{text}</text>')
    for v, text in x_ticks:
        els.append(f'<text x="{sx(v):.1f}" y="{H - BOTTOM + 14}" '
                   f'text-anchor="middle">{text}</text>')
    els.append(f'<text x="{(LEFT + W - RIGHT) / 2}" y="{H - 6}" '
               f'text-anchor="middle">{escape(x_label)}</text>')
    els.append(f'<text transform="translate(12 {(TOP + H - BOTTOM) / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(y_label)}</text>')
    return sx, sy, els


def _legend(items: list[tuple[str, str, str]]) -> list[str]:
    """(label, color, dash) in a row above the plot."""
    els, x = [], LEFT
    for label, color, dash in items:
        els.append(f'<line x1="{x}" y1="10" x2="{x + 18}" y2="10" stroke="{color}" '
                   f'stroke-width="2.5" stroke-dasharray="{dash}"/>'
                   f'<text x="{x + 24}" y="14">{escape(label)}</text>')
        x += 40 + 7 * len(label)
    return els


def risk_chart(example: dict, profile: str, baseline: str, policy: Policy) -> str:
    """Max risk at each action of one run, engine and baseline, harmful call marked."""
    n = len(example["tools"])
    step = max(1, n // 12)
    sx, sy, els = _frame(max(n - 1, 1), 1.0, [(i, str(i)) for i in range(0, n, step)],
                         [(v / 4, f"{v / 4:.2f}") for v in range(5)], "action index",
                         "max risk")
    for at, name in ((policy.alert_at, "alert"), (policy.revoke_at, "revoke")):
        els.append(f'<line x1="{LEFT}" y1="{sy(at):.1f}" x2="{W - RIGHT}" y2="{sy(at):.1f}" '
                   f'stroke="#999" stroke-dasharray="2 3"/><text x="{LEFT + 3}" '
                   f'y="{sy(at) - 3:.1f}" fill="#777">{name} {at}</text>')
    harm = example.get("first_harmful_call")
    if harm is not None:
        x = sx(harm)
        anchor, dx = ("end", -3) if x > W / 2 else ("start", 3)
        els.append(f'<line x1="{x:.1f}" y1="{TOP - 12}" x2="{x:.1f}" y2="{H - BOTTOM}" '
                   f'stroke="{HARM_COLOR}" stroke-width="1.5"/><text x="{x + dx:.1f}" '
                   f'y="{TOP - 4}" fill="{HARM_COLOR}" text-anchor="{anchor}">'
                   f'first harmful call</text>')
    for name, color, dash in ((profile, ENGINE_COLOR, ""), (baseline, BASELINE_COLOR, "5 3")):
        risk = example["risk"][name]
        points = " ".join(f"{sx(i):.1f},{sy(r):.1f}" for i, r in enumerate(risk))
        els.append(f'<polyline points="{points}" fill="none" stroke="{color}" '
                   f'stroke-width="2" stroke-dasharray="{dash}"/>')
        els += [f'<circle cx="{sx(i):.1f}" cy="{sy(r):.1f}" r="3" fill="{color}"><title>'
                f'{name} #{i} {escape(example["tools"][i])}: {r:.2f}</title></circle>'
                for i, r in enumerate(risk)]
    els += _legend([(profile, ENGINE_COLOR, ""), (baseline, BASELINE_COLOR, "5 3")])
    return _svg(els, f"risk over run {example['task_id']}")


def histogram_chart(hist: dict[str, list[int]], bins: int, who: str) -> str:
    """Share of runs per max-risk bin, benign vs successful attacks, side by side."""
    groups = (("benign", "benign runs", BENIGN_COLOR),
              ("successful_attack", "successful attacks", ATTACK_COLOR))
    shares = {g: [c / (sum(hist[g]) or 1) for c in hist[g]] for g, _, _ in groups}
    highest = max(0.01, *(max(s) for s in shares.values()))
    step = 0.1 if highest <= 0.5 else 0.2
    ticks = math.ceil(highest / step - 1e-9)
    sx, sy, els = _frame(bins, ticks * step,
                         [(i, f"{i / bins:.1f}") for i in range(0, bins + 1, 4)],
                         [(k * step, f"{100 * k * step:.0f}%") for k in range(ticks + 1)],
                         f"max risk of the run ({who})", "share of runs")
    bar = (sx(1) - sx(0)) / 2 - 1
    for k, (g, label, color) in enumerate(groups):
        for i, s in enumerate(shares[g]):
            if s:
                x = sx(i) + k * (bar + 1) + 0.5
                els.append(f'<rect x="{x:.1f}" y="{sy(s):.1f}" width="{bar:.1f}" '
                           f'height="{sy(0) - sy(s):.1f}" fill="{color}"><title>{label}, '
                           f'risk {i / bins:.2f}-{(i + 1) / bins:.2f}: {hist[g][i]} runs '
                           f'({100 * s:.1f}%)</title></rect>')
    els += _legend([(f"{label} (n={sum(hist[g])})", color, "") for g, label, color in groups])
    return _svg(els, f"max-risk histogram, {who}")


# --- HTML ------------------------------------------------------------------------------------

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px}
td{text-align:right}td:first-child{text-align:left}th{background:#f3f3f3}
.eng{color:#1f6fb4}.base{color:#b8600a}.warn{color:#b5172e}figure{display:inline-block;margin:1em}
figcaption{font-size:13px;max-width:560px}"""


def _html_table(fig: dict) -> str:
    eng, base = escape(fig["profile"]), escape(fig["baseline_profile"])
    head1 = "".join(f'<th colspan="2">{escape(title)}</th>' for _, title in COLUMNS)
    head2 = "".join(f'<th class="eng">{eng}</th><th class="base">{base}</th>' for _ in COLUMNS)
    rows = []
    for name, block in _rows(fig):
        cells = "".join(f'<td class="eng">{_pct(block[k])}</td>'
                        f'<td class="base">{_pct(block["baseline"][k])}</td>' for k, _ in COLUMNS)
        rows.append(f"<tr><td>{escape(name)}</td><td>{sum(block['runs'].values())}</td>"
                    f"<td>{block['runs'].get('benign', 0)}</td><td>{_harm_runs(block)}</td>"
                    f"{cells}</tr>")
    return (f'<table><tr><th rowspan="2">slice</th><th rowspan="2">runs</th>'
            f'<th rowspan="2">benign</th><th rowspan="2">attacks*</th>{head1}</tr>'
            f"<tr>{head2}</tr>{''.join(rows)}</table>")


def render_html(fig: dict, policy: Policy | None = None) -> str:
    policy = policy or Policy()
    eng, base = fig["profile"], fig["baseline_profile"]
    plots = fig["plots"]
    examples = "".join(
        f"<figure>{risk_chart(ex, eng, base, policy)}<figcaption><b>{escape(ex['title'])}</b>"
        f" &mdash; {escape(str(ex['suite']))}, {escape(str(ex['model']))}, run "
        f"<code>{escape(ex['task_id'])}</code>, {len(ex['tools'])} calls</figcaption></figure>"
        for ex in plots["examples"]) or "<p>No runs to show.</p>"
    hists = "".join(
        f"<figure>{histogram_chart(plots['max_risk_histograms'][who], plots['bins'], who)}"
        f"<figcaption>{escape(who)}</figcaption></figure>" for who in (eng, base))
    notes = "".join(f"<li>{escape(n)}</li>" for n in fig["notes"])
    warnings = "".join(f'<p class="warn">{escape(w)}</p>' for w in _warnings(fig))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>intentwatch evaluation</title>
<style>{STYLE}</style></head><body>
<h1>intentwatch evaluation: {escape(eng)} vs {escape(base)} baseline</h1>
<p>{fig['events']['lines']} event lines, {sum(fig['runs'].values())} runs {fig['runs']},
catalog <code>{escape(fig['catalog'])}</code>, policy alert at {policy.alert_at},
revoke at {policy.revoke_at}; evaluated in {fig['seconds']} s.</p>{warnings}
<h2>Figures (% of runs)</h2>{_html_table(fig)}
<p>* attacks: successful attacks with a first harmful call (recall's denominator).</p>
<ul>{notes}<li>recall: revoked at or before the first harmful call; late recall: revoked at any
point of the run.</li></ul>
<h2>Risk over a run</h2>
<p>Highest risk the engine gave each action (its request and its result) of a few example
runs; the red line marks the first harmful call.</p>{examples}
<h2>Score distributions</h2>
<p>Per-run max risk: benign runs vs successful attacks with a harmful call.</p>{hists}
</body></html>
"""


def write_report(fig: dict, out_dir, policy: Policy | None = None) -> Path:
    """Write out_dir/index.html; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    path.write_text(render_html(fig, policy), encoding="utf-8")
    return path
