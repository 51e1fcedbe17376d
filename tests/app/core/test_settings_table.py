"""The README's settings table is the one list of RESNET_* variables: it names exactly the fields of `Settings`."""

from __future__ import annotations

import re
from pathlib import Path

from app.core.config import Settings

README = Path(__file__).resolve().parents[3] / "README.md"


def test_the_readme_settings_table_lists_exactly_the_settings():
    text = README.read_text()
    table = text[text.index("### Settings (environment variables)"):]
    table = table[: table.index("\n\n", table.index("| variable |"))]
    named = set(re.findall(r"`RESNET_([A-Z_]+)`", table))
    assert named == {name.upper() for name in Settings.model_fields}
