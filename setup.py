"Legacy shim: all metadata lives in pyproject.toml (PEP 621). Kept for tools that still call `setup.py`."
from setuptools import setup

setup()
