"""The package's one compiled part (fedalgo's Montgomery loops on GMP); the rest: pyproject."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "fedalgo.paillier._montgomery",
            sources=["libs/fedalgo/paillier/_montgomery.c"],
            libraries=["gmp"],
            extra_compile_args=["-O2", "-Wall"],
        )
    ]
)
