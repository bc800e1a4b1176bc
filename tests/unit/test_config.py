from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from facewatch.config import ConfigError, load_config, parse_config
from tests.conftest import ROOT


def test_repo_config_yaml_is_valid_and_equals_the_defaults() -> None:
    from_file = load_config(ROOT / "config.yaml", environ={})
    assert from_file == parse_config({}, environ={}, base_dir=ROOT)
    assert from_file.data_dir == str(ROOT / "data")  # relative to the file, not to the current directory


def test_paths_in_a_file_are_relative_to_it_and_in_the_environment_to_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "c.yaml"
    path.write_text("data_dir: var\nmodels: {dir: ../models}\nwatcher: {file_roots: [videos, /abs]}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path, environ={})
    assert cfg.data_dir == str(etc / "var")
    assert cfg.models.dir == str(tmp_path / "models")
    assert cfg.watcher.file_roots == [str(etc / "videos"), "/abs"]
    assert cfg.storage_url() == f"sqlite:///{etc / 'var' / 'facewatch.db'}"
    # The default data_dir belongs to the file too; an environment value to the current directory.
    path.write_text("api: {port: 9000}\n")
    assert load_config(path, environ={}).data_dir == str(etc / "data")
    from_env = load_config(path, environ={"FACEWATCH_DATA_DIR": "here", "FACEWATCH_WATCHER__FILE_ROOTS": "[v]"})
    assert from_env.data_dir == str(elsewhere / "here")
    assert from_env.watcher.file_roots == [str(elsewhere / "v")]
    # No file: the defaults, relative to the current directory.
    assert load_config(None, environ={}).data_dir == str(elsewhere / "data")


def test_config_lookup_order(tmp_path: Path) -> None:
    from facewatch.config_file import find_config

    assert find_config(None, {}, tmp_path).path is None
    (tmp_path / "config.yaml").write_text("{}\n")
    assert find_config(None, {}, tmp_path).path == tmp_path / "config.yaml"
    assert find_config(None, {"FACEWATCH_CONFIG": "/etc/fw.yaml"}, tmp_path).path == Path("/etc/fw.yaml")
    found = find_config("mine.yaml", {"FACEWATCH_CONFIG": "/etc/fw.yaml"}, tmp_path)
    assert (found.path, found.found_by) == (tmp_path / "mine.yaml", "--config")


def test_variables_that_are_not_config_keys_are_left_alone() -> None:
    cfg = parse_config({}, environ={"FACEWATCH_CONFIG": "/x.yaml", "FACEWATCH_API_KEY": "fwk_x"})
    assert cfg == parse_config({}, environ={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  port: 1234\nruntime:\n  device: cpu\n")
    cfg = load_config(path, environ={"FACEWATCH_API__PORT": "9000", "FACEWATCH_DATA_DIR": "/srv/fw"})
    assert cfg.api.port == 9000
    assert cfg.runtime.device == "cpu"
    assert cfg.data_dir == "/srv/fw"


def test_nested_environment_override() -> None:
    cfg = parse_config({}, environ={"FACEWATCH_MODELS__DETECTOR__SCORE_THRESHOLD": "0.5"})
    assert cfg.models.detector.score_threshold == 0.5


@pytest.mark.parametrize(
    ("data", "environ", "expected"),
    [
        ({"api": {"prot": 1}}, {}, "api.prot: unknown key"),
        ({"nonsense": 1}, {}, "nonsense: unknown key"),
        ({"runtime": {"device": "tpu"}}, {}, "runtime.device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"api": {"port": 70000}}, {}, "api.port: Input should be less than or equal to 65535"),
        ({}, {"FACEWATCH_API__PORT": "http"}, "api.port: Input should be a valid integer"),
        ({}, {"FACEWATCH_BOGUS": "1"}, "bogus: unknown key"),
        ({"quality": {"min_size_px": 90}}, {}, "quality: Value error, good_size_px must be greater than min_size_px"),
        ({"api": 5}, {"FACEWATCH_API__PORT": "1"}, "api.port goes inside 'api', which is not a section"),
    ],
)
def test_bad_values_name_the_key(data: dict[str, Any], environ: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, environ=environ)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("api: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml", environ={})
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy, environ={})


def _cli(*args: str, env_extra: dict[str, str] | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEWATCH_")}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "facewatch", *args], capture_output=True, text=True, env=env,
        cwd=cwd or ROOT, timeout=120,
    )


def test_cli_exits_2_with_one_line_on_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  port: -1\n")
    proc = _cli("config", "check", "--config", str(path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "api.port" in proc.stderr and "greater than or equal to 0" in proc.stderr
    proc = _cli("config", "check", env_extra={"FACEWATCH_RUNTIME__THREADS": "2"})
    assert proc.returncode == 2
    assert "runtime.threads: unknown key" in proc.stderr


@pytest.mark.parametrize(
    "argv",
    [[], ["serve"], ["models"], ["models", "fetch"], ["models", "check"], ["analyze"], ["config"], ["config", "check"],
     ["cameras"], ["cameras", "add"], ["cameras", "edit"], ["cameras", "status"], ["enrol"]],
)
def test_every_subcommand_has_help(argv: list[str]) -> None:
    proc = _cli(*argv, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: facewatch")
