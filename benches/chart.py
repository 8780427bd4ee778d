"""Draws the benchmark's CPU per request as an SVG bar chart (user and system stacked), one bar per scenario."""

from xml.sax.saxutils import escape


def write(summary, path, title="CPU µs per request on the proxy's process (one worker, one core)"):
    # Each bar is the scenario's median CPU per request, split in the proportion of its user and system parts.
    rows = []
    for name, s in summary.items():
        if name == "direct (upstream)":
            continue
        share = s["user_us"] / max(s["user_us"] + s["sys_us"], 1e-9)
        rows.append((name, s["cpu_us"] * share, s["cpu_us"] * (1 - share)))
    rows.sort(key=lambda r: r[1] + r[2])
    # room for the longest label: about 7.5 px a character at 13 px, bold
    label_w = max(330, 20 + int(7.5 * max((len(r[0]) for r in rows), default=0)))
    bar_w, row_h, top = 520, 22, 52
    width, height = label_w + bar_w + 90, top + row_h * len(rows) + 12
    totals = sorted(u + s for _, u, s in rows) or [1.0]
    peak = totals[-1]
    # One far slower peer (the node stack) would flatten every other bar: its bar is cut, its figure kept.
    if len(totals) > 1 and totals[-1] > 3 * totals[-2]:
        peak = totals[-2] * 1.25
    scale = bar_w / peak
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13">',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="10" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{label_w}" y="30" width="12" height="10" fill="#2f6db3"/>'
           f'<text x="{label_w + 16}" y="39" font-size="11">user</text>'
           f'<rect x="{label_w + 60}" y="30" width="12" height="10" fill="#9bbce0"/>'
           f'<text x="{label_w + 76}" y="39" font-size="11">system (kernel, for this process)</text>']
    for i, (name, user, system) in enumerate(rows):
        y = top + i * row_h
        weight = ' font-weight="bold"' if name.startswith("gatehouse") else ""
        out.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end"{weight}>{escape(name)}</text>')
        cut = (user + system) * scale > bar_w
        f = bar_w / ((user + system) * scale) if cut else 1.0
        uw, sw = user * scale * f, system * scale * f
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{uw:.1f}" height="{row_h - 8}" fill="#2f6db3"/>')
        out.append(f'<rect x="{label_w + uw:.1f}" y="{y + 4}" width="{sw:.1f}" height="{row_h - 8}" fill="#9bbce0"/>')
        if cut:
            out.append(f'<path d="M{label_w + bar_w - 24} {y + 20} l6 -16 M{label_w + bar_w - 16} {y + 20} l6 -16" '
                       f'stroke="#ffffff" stroke-width="3"/>')
        out.append(f'<text x="{label_w + uw + sw + 6:.1f}" y="{y + 15}">{user + system:.1f}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
