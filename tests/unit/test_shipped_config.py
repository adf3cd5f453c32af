"""The configuration file we ship says exactly what the defaults are."""

from pathlib import Path

from vxvdex import config

SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "vxvdex" / "vxvdex.yaml"


def test_shipped_file_is_valid_and_equals_the_defaults() -> None:
    assert config.load(SHIPPED).values == config.Config().values


def test_every_setting_is_documented_in_the_shipped_file() -> None:
    text = SHIPPED.read_text()
    for setting in config.SETTINGS:
        assert f"{setting.path.split('.')[-1]}:" in text, setting.path
