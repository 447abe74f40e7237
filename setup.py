"""Build hook for the optional C accelerators (Hessian 2 skip, the proxy's fast lane, the
HTTP/1.1 head scanner).

Everything else about the package is in pyproject.toml. ``optional=True``: without a
working compiler an extension is skipped (setuptools warns) and the module using it runs
its pure-Python path (``xproto.accel``); ``XPROTO_PURE_PYTHON=1`` ignores built ones at run time.
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
