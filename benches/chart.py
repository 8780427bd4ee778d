"""Draws the benchmark's CPU per request as an SVG bar chart (user and system stacked), one bar per scenario."""

from xml.sax.saxutils import escape


def write(summary, path, title="CPU µs per request on the proxy's process (one worker, one core)"):
    rows = [(name, s["user_us"], s["sys_us"]) for name, s in summary.items() if name != "direct (upstream)"]
    rows.sort(key=lambda r: r[1] + r[2])
    label_w, bar_w, row_h, top = 330, 520, 22, 48
    width, height = label_w + bar_w + 90, top + row_h * len(rows) + 40
    peak = max((u + s for _, u, s in rows), default=1.0)
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
        out.append(f'<rect x="{label_w}" y="{y + 4}" width="{user * scale:.1f}" height="{row_h - 8}" fill="#2f6db3"/>')
        out.append(f'<rect x="{label_w + user * scale:.1f}" y="{y + 4}" width="{system * scale:.1f}" '
                   f'height="{row_h - 8}" fill="#9bbce0"/>')
        out.append(f'<text x="{label_w + (user + system) * scale + 6:.1f}" y="{y + 15}">{user + system:.1f}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
