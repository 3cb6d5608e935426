"""Runtimes that run workloads on a host: ``process`` (subprocesses, ``process.py``) and
``docker`` (containers, ``docker.py``), both behind ``base.Runtime``; ``choice.py`` picks one.

The package itself imports none of them: what only needs a piece (the CLI's options, the sandbox
settings) does not load the Docker client or the process runtime.
"""
