"""Where the project's own folders are, for code that runs from a checkout (the submit
wrapper, the cluster stack, the CLI's default conf folder). Not used on executors."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CONF_DIR = PROJECT_ROOT / "conf"
