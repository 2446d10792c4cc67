"""README stays true: its configuration table is the config tree's, and CI runs its test command."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_configuration_table_matches_the_config_tree():
    table = subprocess.run([sys.executable, str(ROOT / "tools" / "config_reference.py")],
                           capture_output=True, text=True, check=True).stdout.strip()
    missing = [line for line in table.splitlines() if line not in README]
    assert not missing, "README's table is out of date; paste `python tools/config_reference.py`:\n" + "\n".join(missing)


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_cmd = next(c for c in commands if "pytest" in c)
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
