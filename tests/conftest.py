"""Shared by every test tier: the tests/ folder is importable (lan.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
