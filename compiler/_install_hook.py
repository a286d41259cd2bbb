"""Build the installed objects when the package is built or installed.

setuptools runs this ``build_py`` (pyproject.toml ``[tool.setuptools]
cmdclass``) for ``pip install``, ``pip install -e`` and ``pip wheel``. After
the usual work it compiles what every program shares, for this machine, into
``runtime/_installed`` (see [Installed objects] in runtime/cache.py): inside
the wheel's build folder, or, for an editable install (PEP 660), in the
source tree, where the editable package is imported from. A failure never
fails the install: it warns, and programs then compile the kernels they call
themselves (slower to compile, same code). The build environment needs the
compiler's own dependencies (pyproject.toml ``[build-system] requires``).
"""

from __future__ import annotations

import os
import shutil
import sys
import traceback
import warnings
from pathlib import Path

from setuptools.command.build_py import build_py as _setuptools_build_py

_ROOT = Path(__file__).resolve().parent.parent
SKIP_ENV = "XLAC_SKIP_INSTALLED_OBJECTS"


class build_py(_setuptools_build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            target = Path(self.get_package_dir("runtime")).resolve() / "_installed"
        else:
            target = Path(self.build_lib) / "runtime" / "_installed"
        _build_installed_objects(target)

    def get_output_mapping(self) -> dict[str, str]:
        # A strict editable install links only the files named here.
        mapping = super().get_output_mapping()
        built = Path(self.get_package_dir("runtime")) / "_installed"
        if self.editable_mode and built.is_dir():
            for path in built.iterdir():
                mapping[str(Path(self.build_lib, "runtime", "_installed", path.name))] = str(path)
        return mapping


def _build_installed_objects(target: Path) -> None:
    # Never ship objects of an earlier build (another machine, older sources).
    shutil.rmtree(target, ignore_errors=True)
    if os.environ.get(SKIP_ENV):
        return
    if str(_ROOT) not in sys.path:  # setuptools loads this file without its package
        sys.path.insert(0, str(_ROOT))
    try:
        from compiler.kernel_library import install_objects

        install_objects(target)
    except Exception as error:  # noqa: BLE001 - the install goes on without them
        traceback.print_exc()
        warnings.warn(f"xla-py: the GEMM kernel library and thread pool were not built at "
                      f"install time ({error!r}); programs compile them as needed "
                      "(`xlac kernels build` stores the library in the compile cache).")
