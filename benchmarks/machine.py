"""What every benchmark prints beside its figures: the CPU, and how busy other processes kept it.

These machines change from session to session (one had AMX and AVX-512, another AVX2 only)
and are shared, so a figure means little without the CPU it ran on and the load around it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def cpu_line() -> str:
    """The CPU model, the core count and the vector/matrix flags that change these figures."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"CPU: unknown, {os.cpu_count()} cores"
    model = re.search(r"model name\s*:\s*(.+)", info)
    flags = set(re.search(r"flags\s*:\s*(.+)", info).group(1).split()) if "flags" in info else set()
    avx512 = sorted(f for f in flags if f.startswith("avx512"))
    amx = sorted(f for f in flags if f.startswith("amx"))
    return (
        f"CPU: {model.group(1) if model else 'unknown'}, {os.cpu_count()} cores; "
        f"avx2 {'yes' if 'avx2' in flags else 'no'}; avx512 {' '.join(avx512) or 'no'}; amx {' '.join(amx) or 'no'}"
    )


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have used since boot (Linux /proc/stat), to tell how busy others kept the machine."""
    try:
        fields = Path("/proc/stat").read_text().split("\n")[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds(children: bool = False) -> float:
    """CPU seconds of this process (and, with ``children``, of the child processes it has waited for)."""
    t = os.times()
    return t.user + t.system + (t.children_user + t.children_system if children else 0.0)
