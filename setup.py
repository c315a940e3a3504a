"""Builds the Cython twins in edge/_fast/.

Without a C compiler (or without Cython) the package still installs and runs on the pure-Python
references. Set SMARTSHARE_REQUIRE_EXT=1 (CI does) to make a failed build an error instead, so a
release can never silently lose its extensions.
"""

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

REQUIRE = os.environ.get("SMARTSHARE_REQUIRE_EXT", "") not in ("", "0")
TWINS = {"hashing": [], "codec": [], "sig": ["-fopenmp"], "smt": []}


def extensions():
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        if REQUIRE:
            raise
        print("smartshare: Cython missing, installing the pure-Python reference only", file=sys.stderr)
        return []
    mods = [Extension(f"edge._fast.{name}_c", [f"edge/_fast/{name}_c.pyx"],
                      extra_compile_args=["-O3", *flags], extra_link_args=flags)
            for name, flags in TWINS.items()]
    return cythonize(mods, compiler_directives={"language_level": "3"}, quiet=True)


class OptionalBuildExt(build_ext):
    """build_ext that falls back to pure Python unless SMARTSHARE_REQUIRE_EXT=1."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or broken
            if REQUIRE:
                raise
            print(f"smartshare: extension build failed ({exc}); using the pure-Python reference",
                  file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if REQUIRE:
                raise
            print(f"smartshare: could not build {ext.name} ({exc})", file=sys.stderr)


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
