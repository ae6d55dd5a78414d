"""Resident memory of this process, for the benchmarks."""

from __future__ import annotations


def resident_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB, from /proc (Linux; zeros elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError):
        return 0.0, 0.0
