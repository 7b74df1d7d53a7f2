"""ratios.png: etcdpy's throughput relative to etcd (1 and 3 members) and to the bare grpc.aio
server per workload, and the 1M-key load's size/memory/restart ratios. matplotlib is optional
(the `bench` extra): without it there is no plot and the table and JSON still are."""

from __future__ import annotations

from pathlib import Path

# The targets, drawn as reference lines so a glance says how far off etcdpy is.
TARGET_LINES = ((0.3, "0.3x etcd (put)"), (0.35, "0.35x etcd (ranges)"), (1.0, "parity"))


def write(rows: list[dict[str, object]], load: dict[str, float], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display: render to a file
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = {"x etcd, 1 member": ("etcdpy-1", "x_etcd"),
              "x etcd, 3 members": ("etcdpy-3", "x_etcd"),
              "x bare grpc.aio": ("etcdpy-1", "x_bare")}
    names = list(dict.fromkeys(str(r["workload"]) for r in rows))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5),
                                  gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(series)
    for i, (label, (target, key)) in enumerate(series.items()):
        vals = []
        for n in names:
            v = next((r.get(key) for r in rows if r["workload"] == n and r["target"] == target),
                     None)
            vals.append(v if isinstance(v, float) else 0.0)
        ax.bar([x + i * width for x in range(len(names))], vals, width, label=label)
    for y, label in TARGET_LINES:
        ax.axhline(y, linestyle="--", linewidth=0.8, color="grey")
        ax.text(len(names) - 0.5, y, label, fontsize=7, va="bottom", ha="right")
    ax.set_xticks([x + width for x in range(len(names))], names)
    ax.set_ylabel("etcdpy ops/s ÷ reference ops/s")
    ax.set_title("etcdpy throughput ratios (medians over rounds)")
    ax.legend(fontsize=8)
    labels = {"keys_per_s": "load keys/s", "data_dir_mb": "data dir", "rss_mb": "RSS",
              "restart_s": "restart time"}
    keys = [k for k in labels if k in load]
    if not keys:
        ax2.text(0.5, 0.5, "load workload not run", ha="center", transform=ax2.transAxes)
    ax2.bar(range(len(keys)), [load[k] for k in keys], color="tab:purple")
    ax2.axhline(1.0, linestyle="--", linewidth=0.8, color="grey")
    ax2.axhline(2.0, linestyle=":", linewidth=0.8, color="grey")
    ax2.set_xticks(range(len(keys)), [labels[k] for k in keys], rotation=20, fontsize=8)
    ax2.set_title("loaded data set, etcdpy ÷ etcd")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
