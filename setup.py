"""Build hook for the optional C extension (clients/_fastpath.c); everything else is in
pyproject.toml. Without a compiler the install still succeeds and the load generator runs its
pure-Python path (results say which: ``loadgen.fast_path``)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "clients._fastpath",
            ["clients/_fastpath.c"],
            depends=["clients/_pump.c"],
            extra_compile_args=["-O2", "-Wall", "-Wno-missing-braces"],
            optional=True,
        )
    ]
)
