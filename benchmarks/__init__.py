"""Load benchmark: the app's hotline (A) against Asterisk's own app_queue (B) on one PBX.

Run it with ``make bench`` or ``.venv/bin/python -m benchmarks.run --help``.
"""
