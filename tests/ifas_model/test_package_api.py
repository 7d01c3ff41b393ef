"""The package's lazy exports: listed by dir() (notebook tab completion), imported only on first access."""

from __future__ import annotations

import subprocess
import sys


def test_dir_lists_the_lazy_exports_without_importing_torch():
    script = ("import sys, ifas_model\n"
              "names = dir(ifas_model)\n"
              "print(all(n in names for n in ifas_model.__all__), 'IFASProcessor' in names, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False"]
