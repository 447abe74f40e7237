"""Build hook for the optional C accelerators (Hessian 2 skip, the proxy's fast lane).

Everything else about the package is in pyproject.toml. ``optional=True``: without a
working compiler the extension is skipped (setuptools warns) and xproto.hessian2 and xproto.proxy.lane use
their pure-Python paths; ``XPROTO_PURE_PYTHON=1`` ignores a built extension at run time.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xproto.hessian2._speedups",
            sources=["xproto/hessian2/_speedups.c"],
            optional=True,
        ),
        Extension(
            "xproto.proxy._lane",
            sources=["xproto/proxy/_lane.c"],
            optional=True,
        ),
        Extension(
            "xproto.codecs._http_scan",
            sources=["xproto/codecs/_http_scan.c"],
            optional=True,
        ),
    ]
)
