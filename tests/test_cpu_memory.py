"""utils/engine/cpu_memory.py: with freed memory kept, a repeated large allocation stops page-faulting."""
import os
import subprocess
import sys

import pytest

from utils.engine.cpu_memory import keep_freed_memory

# Fills and frees an 80 MB tensor, then 64, 60 and 56 MB ones: each fits in memory an earlier one freed, as a
# training step's activations fit in the last step's (an equal size may not: posix_memalign needs some slack).
# Prints the page faults of the last three.
PROBE = """
import resource, sys, torch
sys.path.insert(0, {root!r})
from utils.engine.cpu_memory import keep_freed_memory
if {keep}:
    assert keep_freed_memory()
torch.ones(20 * 2 ** 20).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for megabytes in (64, 60, 56):
    torch.ones(megabytes * 2 ** 18).sum()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=root, keep=keep)], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_kept_memory_is_reused_without_page_faults():
    pages = (64 + 60 + 56) * 2 ** 20 // 4096         # in 4 KB pages
    default, kept = _faults(False), _faults(True)
    assert default > 0.9 * pages                      # each round maps fresh pages and faults them in
    assert kept < 0.05 * pages                        # the heap hands the freed block back


def test_keep_freed_memory_is_idempotent():
    assert keep_freed_memory() == keep_freed_memory()
