"""Runtimes: named, pinned environments that run one step of work.

A runtime is built from a lock file (``locks/<name>.txt``) into a virtualenv, or into a
Debian root filesystem where the host's C library is too old for the runtime's
wheels. Airflow talks to it only through the JSON contract in :mod:`.contract`.
"""
