"""The server configuration: YAML plus environment, with errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from bot.config import load_server_config
from bot.configkeys import ConfigError
from runner.errors import ProjectError, SluiceError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.yml"
    path.write_text(text)
    return path


def test_file_and_environment(tmp_path: Path):
    path = write(tmp_path, "broker_url: redis://10.0.0.1:6379/0\n"
                           "gitlab:\n  url: https://gitlab.example.com\n  token: from-file\n"
                           "warehouses:\n  default: duckdb:////srv/w.duckdb\n"
                           "repositories:\n  - forge: gitlab\n    name: data/shop\n")
    config = load_server_config(path, {"SLUICE_GITLAB_TOKEN": "from-env", "SLUICE_GITLAB_WEBHOOK_SECRET": "s",
                                "SLUICE_STATE_URL": "postgresql+psycopg://db/sluice"})
    assert config.forge("gitlab") is not None and config.forge("gitlab").token == "from-env"
    assert config.forge("gitlab").webhook_secret == "s"
    assert config.state_url == "postgresql+psycopg://db/sluice"
    assert config.broker_url == "redis://10.0.0.1:6379/0"
    assert config.repository("gitlab", "Data/Shop") is not None
    assert config.repository("github", "data/shop") is None
    config.check_secrets()


def test_unknown_key_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, "state_url: sqlite:///x.db\nbrokr_url: redis://x\n")
    with pytest.raises(ProjectError) as error:
        load_server_config(path, {})
    assert str(error.value).startswith(f"{path}:2: unknown key 'brokr_url'")


def test_repository_may_only_name_defined_warehouses(tmp_path: Path):
    path = write(tmp_path, "gitlab:\n  token: t\nwarehouses:\n  default: duckdb:///w.duckdb\n"
                           "repositories:\n  - forge: gitlab\n    name: a/b\n    warehouses: [prod_pg]\n")
    with pytest.raises(ProjectError, match="unknown warehouse connection 'prod_pg'"):
        load_server_config(path, {})


def test_a_forge_without_a_secret_is_refused_unless_insecure(tmp_path: Path):
    config = load_server_config(write(tmp_path, "github:\n  token: t\n"), {})
    with pytest.raises(ConfigError, match="SLUICE_GITHUB_WEBHOOK_SECRET"):
        config.check_secrets()
    load_server_config(write(tmp_path, "github:\n  token: t\ninsecure: true\n"), {}).check_secrets()


def test_serve_refuses_to_start_without_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # `serve` points prometheus_client at a shared directory; keep that inside this test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    path = write(tmp_path, f"work_dir: {tmp_path / 'w'}\ngitlab:\n  token: t\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(path), "--embedded"])
    assert result.exit_code == 2
    assert "gitlab has no webhook_secret" in result.output
    assert "Traceback" not in result.output


def test_github_needs_a_token_or_an_app(tmp_path: Path):
    with pytest.raises(ProjectError, match="github needs a token, or an app_id with a private key"):
        load_server_config(write(tmp_path, "github:\n  webhook_secret: s\n"), {})


def test_installation_name_and_deploy_hold(tmp_path: Path) -> None:
    assert load_server_config(None, {"SLUICE_PUBLIC_URL": "https://sluice.example.com"}).installation \
        == "sluice_example_com"
    named = load_server_config(None, {"SLUICE_NAME": "shop_data", "SLUICE_DEPLOY_HOLD": "2h"})
    assert (named.installation, named.deploy_hold) == ("shop_data", "2h")
    path = tmp_path / "server.yml"
    path.write_text("name: Shop Data!\n")
    with pytest.raises(SluiceError, match=r"server.yml:1: the installation name 'Shop Data!' is not valid"):
        load_server_config(path, {})
    path.write_text("deploy_hold: forever\n")
    with pytest.raises(SluiceError, match=r"server.yml:1: deploy_hold: cannot read the duration 'forever'"):
        load_server_config(path, {})
    with pytest.raises(SluiceError, match=r"the variable SLUICE_DEPLOY_HOLD: deploy_hold: cannot read"):
        load_server_config(None, {"SLUICE_DEPLOY_HOLD": "soon"})
