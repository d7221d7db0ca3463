"""Which host folders a container's command needs (kept visible whatever the pod mounts)."""

from __future__ import annotations

from pathlib import Path

from node_agent.runtime import command_paths, python_env_paths


def fake_venv(root: Path) -> Path:
    """A venv laid out like `python -m venv` + `pip install -e .` (setuptools' editable finder)."""
    venv = root / ".venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "bin").mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n")
    (venv / "bin" / "python3.11").symlink_to("/usr/bin/python3.11")
    script = venv / "bin" / "forecast-trainer"
    script.write_text(f"#!{venv}/bin/python3.11\nimport sys\nfrom forecast_trainer.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    for pkg in ("trainer_image/forecast_trainer", "operator/trainingjob_operator", "extra"):
        (root / pkg).mkdir(parents=True)
    finder = "__editable___pkg_0_1_0_finder"
    (site / "__editable__.pkg-0.1.0.pth").write_text(f"import {finder}; {finder}.install()")
    (site / "__editable___pkg_0_1_0_finder.py").write_text(
        "import sys\nfrom importlib.machinery import ModuleSpec\n"
        f"MAPPING: dict[str, str] = {{'forecast_trainer': '{root}/trainer_image/forecast_trainer', "
        f"'trainingjob_operator': '{root}/operator/trainingjob_operator'}}\n"
        "NAMESPACES: dict[str, list[str]] = {}\n"
    )
    (site / "legacy.pth").write_text(f"# comment\n{root}/extra\n/does/not/exist\n")
    return venv


def test_python_env_paths_finds_the_venv_its_base_and_editable_sources(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    assert python_env_paths(venv) == {
        str(venv),
        "/usr/bin",
        f"{tmp_path}/trainer_image/forecast_trainer",
        f"{tmp_path}/operator/trainingjob_operator",
        f"{tmp_path}/extra",
    }
    assert python_env_paths(tmp_path) == set()  # not a venv


def test_command_paths_follow_a_script_to_its_venv(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path)
    paths = set(command_paths(str(venv / "bin" / "forecast-trainer"), "/usr/bin:/bin"))
    assert {str(venv / "bin"), str(venv), f"{tmp_path}/trainer_image/forecast_trainer"} <= paths
    # by name through PATH, and the venv's python itself
    assert set(command_paths("forecast-trainer", f"{venv}/bin:/usr/bin")) == paths
    assert str(venv) in command_paths("python3.11", f"{venv}/bin:/usr/bin")


def test_command_paths_of_plain_commands(tmp_path: Path) -> None:
    assert command_paths("/bin/sh", "/usr/bin:/bin") == ("/bin",)
    assert command_paths("no-such-command", "/usr/bin:/bin") == ()
    env_script = tmp_path / "tool"
    env_script.write_text("#!/usr/bin/env -S python3 -u\nprint(1)\n")
    env_script.chmod(0o755)
    assert set(command_paths(str(env_script), "/usr/bin")) == {str(tmp_path), "/usr/bin"}
