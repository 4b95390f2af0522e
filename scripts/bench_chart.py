#!/usr/bin/env python3
"""Draws the rig's results as an SVG bar chart: requests per second of each
target relative to direct gRPC, per case (medians across rounds).

    scripts/bench_chart.py RESULTS.tsv OUT.svg

RESULTS.tsv is the rig's results.tsv (see ../shared/bench/README.md).
"""
import csv
import statistics
import sys
from collections import defaultdict

COLORS = {
    "direct-grpc": "#9aa5b1",
    "grpc-gateway": "#e07a5f",
    "baseline": "#81b29a",
    "protogate": "#3d85c6",
}


def main():
    src, out = sys.argv[1], sys.argv[2]
    rps = defaultdict(list)
    cases, targets = [], []
    with open(src) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            case, target = row["case"], row["target"]
            rps[(case, target)].append(float(row["rps"]))
            if case not in cases:
                cases.append(case)
            if target not in targets:
                targets.append(target)
    ratio = {}
    for case in cases:
        base = statistics.median(rps[(case, "direct-grpc")])
        for t in targets:
            ratio[(case, t)] = statistics.median(rps[(case, t)]) / base

    bar, gap, group_gap, left, top, height = 26, 4, 40, 60, 50, 260
    group_w = len(targets) * (bar + gap)
    width = max(left + len(cases) * (group_w + group_gap) + 20, 560)
    total_h = top + height + 80
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total_h}" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="22" font-size="15" font-weight="bold">req/s relative to direct gRPC (higher is better)</text>',
    ]
    for tick in [0, 0.25, 0.5, 0.75, 1.0]:
        y = top + height - tick * height
        svg.append(f'<line x1="{left - 5}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        svg.append(f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end">{tick:.2f}</text>')
    for i, case in enumerate(cases):
        x0 = left + i * (group_w + group_gap) + 10
        for j, t in enumerate(targets):
            r = ratio[(case, t)]
            h = min(r, 1.0) * height
            x = x0 + j * (bar + gap)
            y = top + height - h
            color = COLORS.get(t, "#81b29a")
            svg.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{h:.1f}" fill="{color}"><title>{t}: {r:.2f}</title></rect>')
            svg.append(f'<text x="{x + bar / 2}" y="{y - 4:.1f}" text-anchor="middle" font-size="10">{r:.2f}</text>')
        svg.append(f'<text x="{x0 + group_w / 2}" y="{top + height + 18}" text-anchor="middle" font-weight="bold">{case}</text>')
    lx = left
    for t in targets:
        svg.append(f'<rect x="{lx}" y="{top + height + 40}" width="12" height="12" fill="{COLORS.get(t, "#81b29a")}"/>')
        svg.append(f'<text x="{lx + 16}" y="{top + height + 50}">{t}</text>')
        lx += 130
    svg.append("</svg>")
    with open(out, "w") as f:
        f.write("\n".join(svg) + "\n")
    print(out)


main()
