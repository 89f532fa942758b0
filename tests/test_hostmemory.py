import os
import platform
import subprocess
import sys

import pytest


# Allocates and frees a 64 MB tensor ten times; prints the minor page faults of the last five.
PROGRAM = """
import resource, sys, torch
from hifigan.hostmemory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def churn(times):
    for _ in range(times):
        torch.ones(16 * 2**20).sum()
churn(5)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
churn(5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    # glibc's defaults, whatever this process was started with
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
def test_kept_memory_is_reused_without_page_faults():
    default, kept = _faults("default"), _faults("keep")
    # glibc maps a 64 MB block afresh every time: 16384 faults each with 4 kB pages (fewer with
    # transparent huge pages); kept, the same block is reused and faults no more
    assert default > 0
    assert kept <= default // 10 and kept < 1000



HUGE_PAGES_PROGRAM = """
import torch
from hifigan.hostmemory import heap_in_huge_pages, keep_freed_memory
def rollup(field):
    return next(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith(field + ":"))
assert keep_freed_memory()
resident = rollup("Rss")
assert heap_in_huge_pages(reserve=1 << 30)
assert rollup("Rss") - resident < 16 * 1024  # address space only: nothing touched (kB)
x = torch.ones(64 * 2**20 // 4)  # 64 MB from the reserved heap
print(rollup("AnonHugePages"))
"""


def _transparent_huge_pages() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as file:
            return file.read()
    except OSError:
        return ""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only")
@pytest.mark.skipif("[never]" in _transparent_huge_pages() or not _transparent_huge_pages(),
                    reason="this kernel has transparent huge pages off")
def test_the_heap_is_reserved_in_huge_pages():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD"))}
    done = subprocess.run([sys.executable, "-c", HUGE_PAGES_PROGRAM], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 32 * 1024  # kB: most of the 64 MB tensor sits in 2 MB pages
