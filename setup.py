"""Build hook for the optional C accelerator of the Hessian 2 codec.

Everything else about the package is in pyproject.toml. ``optional=True``: without a
working compiler the extension is skipped (setuptools warns) and xproto.hessian2 uses
its pure-Python path; ``XPROTO_PURE_PYTHON=1`` ignores a built extension at run time.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xproto.hessian2._speedups",
            sources=["xproto/hessian2/_speedups.c"],
            optional=True,
        )
    ]
)
