"""The deployment files in deploy/ checked against the code they drive: they parse, every command
they run is a real `sluice` subcommand with real options (click's own command tree), every SLUICE_*
variable they name is one the server reads, the example configuration and policy load, and the
health checks hit real routes of the Flask app on the port the web app binds.

Nothing is built or started (no Docker engine, no cluster, no systemd here). Each check returns the
problems it found, and `test_a_mistake_is_caught` edits copies of the files to prove each one fails.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
from ruamel.yaml import YAML
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, RequestRedirect

import bot.config as server_config
from bot.cli.main import main
from bot.forges import FORGES
from bot.forges.gitlab import GitLabConfig
from policies import load_policy
from runner.janitor import parse_duration
from tests.support.paths import REPO

DEPLOY = REPO / "deploy"
CONFIG_PATH = "/etc/sluice/server.yml"  # where every deployment puts server.yml
WORK_DIR = "/var/lib/sluice"
SECRETS = {"SLUICE_GITLAB_TOKEN": "glpat-test", "SLUICE_GITLAB_WEBHOOK_SECRET": "gitlab-secret",
           "SLUICE_GITHUB_TOKEN": "ghp-test", "SLUICE_GITHUB_WEBHOOK_SECRET": "github-secret"}
SERVER_COMMANDS = ("serve", "worker")  # the commands a deployment runs; their options' envvars count
URL = re.compile(r"https?://[^\s'\"\]]+")


def load_yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text(encoding="utf-8")) if doc is not None]


# -- what the code accepts, derived from the code -------------------------------------------------


def known_env_vars() -> set[str]:
    """Every SLUICE_* variable the server configuration reads: each declared key's variable (the
    top level's and each forge section's), SLUICE_CONFIG, and the envvars of the options of
    `sluice serve` and `sluice worker`."""
    names = {key.variable() for key in server_config.TOP_KEYS} | {server_config.CONFIG_VARIABLE}
    for name, forge in FORGES.items():
        names |= {key.variable(name) for key in forge.config_type.KEYS}
    for command in SERVER_COMMANDS:
        for param in main.commands[command].params:
            envvars = param.envvar if isinstance(param.envvar, list | tuple) else [param.envvar]
            names.update(str(e) for e in envvars if e)
    return names


def config_keys() -> set[str]:
    """Every key the server configuration accepts anywhere."""
    keys = {key.name for key in server_config.TOP_KEYS} | set(FORGES) | {"warehouses", "repositories"}
    keys |= set(server_config.REPOSITORY_KEYS)
    for forge in FORGES.values():
        keys |= {key.name for key in forge.config_type.KEYS}
    return keys


class _IdleDispatcher:
    def send(self, event_id: int) -> None:
        raise AssertionError("nothing is dispatched here")

    def ping(self) -> bool:
        return True

    def queue_depth(self) -> int | None:
        return 0


@cache
def url_map() -> Map:
    """The routes of the real app, built with an insecure test configuration."""
    from bot.web.app import create_app
    from runner.state.store import StateStore

    with tempfile.TemporaryDirectory() as tmp:
        config = server_config.ServerConfig(
            state_url=f"sqlite:///{tmp}/state.db", work_dir=Path(tmp), insecure=True,
            forges={"gitlab": GitLabConfig()})
        state = StateStore(config.state_url)
        try:
            app = create_app(config, state=state, dispatcher=_IdleDispatcher())
            with app.test_client() as client:  # the health routes answer, not only exist
                for path in ("/healthz", "/readyz"):
                    assert client.get(path).status_code == 200, path
            return app.url_map
        finally:
            state.close()


def route_problem(url: str) -> str | None:
    path = urlsplit(url).path or "/"
    try:
        url_map().bind("localhost").match(path, method="GET")
    except RequestRedirect:
        return f"{url}: {path} redirects (a trailing slash?)"
    except HTTPException:
        routes = sorted(rule.rule for rule in url_map().iter_rules())
        return f"{url}: the app has no GET route {path} (routes: {', '.join(routes)})"
    return None


def command_problems(argv: list[str], where: str) -> list[str]:
    """Is `argv` a real sluice command line? Subcommands and option names from click's tree, then
    click parses the whole line (option values, types, arguments) without running it."""
    shown = f"{where}: `{shlex.join(argv)}`"
    if not argv or Path(argv[0]).name != "sluice":
        return [f"{shown}: does not run sluice"]
    command: click.Command = main
    path, rest = ["sluice"], list(argv[1:])
    while isinstance(command, click.Group):
        if not rest:
            return [f"{shown}: no subcommand of {' '.join(path)}"]
        name = rest.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return [f"{shown}: {' '.join(path)} has no subcommand {name!r} (it has: "
                    f"{', '.join(sorted(command.commands))})"]
        command, path = sub, [*path, name]
    options = {opt: p for p in command.params if isinstance(p, click.Option)
               for opt in (*p.opts, *p.secondary_opts)}
    problems = []
    index = 0
    while index < len(rest):
        token = rest[index]
        if token.startswith("-") and token != "-":
            option = options.get(token.split("=", 1)[0])
            if option is None:
                problems.append(f"{shown}: {' '.join(path)} has no option {token.split('=', 1)[0]!r} "
                                f"(it has: {', '.join(sorted(options))})")
            elif not option.is_flag and not option.count and "=" not in token:
                index += 1
        index += 1
    if not problems:
        try:
            command.make_context(" ".join(path), list(rest))
        except click.ClickException as exc:
            problems.append(f"{shown}: {exc.format_message()}")
    return problems


def option_value(argv: list[str], name: str) -> str | None:
    for index, token in enumerate(argv):
        if token == name and index + 1 < len(argv):
            return argv[index + 1]
        if token.startswith(f"{name}="):
            return token.split("=", 1)[1]
    return None


def bind_port(argv: list[str]) -> int | None:
    """The port `sluice serve` listens on (its --bind, else the option's default)."""
    if len(argv) < 2 or argv[1] != "serve":
        return None
    bind = option_value(argv, "--bind")
    if bind is None:
        bind = next(p.default for p in main.commands["serve"].params if p.name == "bind")
    return int(str(bind).rpartition(":")[2])


# -- reading the deployment files -----------------------------------------------------------------


def dockerfile(deploy: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (deploy / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("#") and not pending:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text:
            word, _, args = text.partition(" ")
            instructions.append((word.upper(), args.strip()))
    return instructions


def docker_exec_form(deploy: Path, instruction: str) -> list[str]:
    found = [args for word, args in dockerfile(deploy) if word == instruction]
    assert found, f"the Dockerfile has no {instruction}"
    value = json.loads(found[-1])  # the last one counts; exec form only (no shell in between)
    assert isinstance(value, list), f"{instruction} must be in exec form (a JSON list)"
    return [str(v) for v in value]


def compose(deploy: Path) -> dict[str, Any]:
    docs = load_yaml_docs(deploy / "compose.yaml")
    assert len(docs) == 1 and isinstance(docs[0], dict)
    return docs[0]


def is_sluice_service(service: dict[str, Any]) -> bool:
    build = service.get("build")
    dockerfile_name = build.get("dockerfile", "") if isinstance(build, dict) else ""
    return "Dockerfile" in dockerfile_name or str(service.get("image", "")).startswith("sluice")


def as_argv(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def compose_commands(deploy: Path) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    for name, service in compose(deploy)["services"].items():
        if is_sluice_service(service):
            entrypoint = as_argv(service.get("entrypoint") or docker_exec_form(deploy, "ENTRYPOINT"))
            command = as_argv(service.get("command") or docker_exec_form(deploy, "CMD"))
            yield f"compose.yaml services.{name}", entrypoint + command, service


def kubernetes_docs(deploy: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for doc in load_yaml_docs(path):
            yield path, doc


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec") or {}
    if doc.get("kind") == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = (spec.get("template") or {}).get("spec") or {}
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def kubernetes_commands(deploy: Path) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    for path, doc in kubernetes_docs(deploy):
        for container in pod_containers(doc):
            if "sluice" in container.get("image", ""):
                argv = (container.get("command") or docker_exec_form(deploy, "ENTRYPOINT")) + (
                    container.get("args") or docker_exec_form(deploy, "CMD"))
                where = f"kubernetes/{path.name} {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
                yield where, [str(a) for a in argv], container


def systemd_units(deploy: Path) -> dict[str, dict[str, list[str]]]:
    """unit file name -> {"Section.Key": [values]} (keys may repeat)."""
    units: dict[str, dict[str, list[str]]] = {}
    for path in sorted((deploy / "systemd").glob("*.service")):
        entries: dict[str, list[str]] = {}
        section = ""
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            entries.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
        units[path.name] = entries
    return units


def systemd_commands(deploy: Path) -> Iterator[tuple[str, list[str]]]:
    for name, entries in systemd_units(deploy).items():
        for key, values in entries.items():
            if key.startswith("Service.Exec"):
                for value in values:
                    yield f"systemd/{name} {key.split('.', 1)[1]}", shlex.split(value.lstrip("-@+!:"))


def all_commands(deploy: Path) -> list[tuple[str, list[str]]]:
    found = [("Dockerfile ENTRYPOINT+CMD",
              docker_exec_form(deploy, "ENTRYPOINT") + docker_exec_form(deploy, "CMD"))]
    found += [(where, argv) for where, argv, _ in compose_commands(deploy)]
    found += [(where, argv) for where, argv, _ in kubernetes_commands(deploy)]
    found += list(systemd_commands(deploy))
    return found


def text_files(deploy: Path) -> Iterator[Path]:
    for path in sorted(deploy.rglob("*")):
        if path.is_file():
            yield path


# -- the checks: each returns its problems --------------------------------------------------------


def commands_check(deploy: Path) -> list[str]:
    problems = []
    commands = all_commands(deploy)
    ran = {argv[1] for _, argv in commands if len(argv) > 1}
    if not {"serve", "worker"} <= ran:
        problems.append(f"the deployment should run both `sluice serve` and `sluice worker`; it runs {ran}")
    for where, argv in commands:
        problems += command_problems(argv, where)
        if len(argv) > 1 and argv[1] in SERVER_COMMANDS and option_value(argv, "--config") != CONFIG_PATH:
            problems.append(f"{where}: `{shlex.join(argv)}` should read --config {CONFIG_PATH}")
    return problems


def env_check(deploy: Path) -> list[str]:
    """Every SLUICE_* name written anywhere in deploy/ (set, or documented in a comment) is read."""
    known = known_env_vars()
    problems = []
    for path in text_files(deploy):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for name in re.findall(r"\bSLUICE_[A-Z0-9_]*[A-Z0-9]\b", line):
                if name not in known:
                    problems.append(f"{path.relative_to(deploy)}:{number}: Sluice reads no {name} "
                                    f"(it reads: {', '.join(sorted(known))})")
    return problems


def health_check(deploy: Path) -> list[str]:
    """Health checks hit routes the app has, on the port `sluice serve` binds."""
    problems = []

    def check(where: str, url: str, port: int | None) -> None:
        problem = route_problem(url)
        if problem:
            problems.append(f"{where}: {problem}")
        if port is not None and urlsplit(url).port != port:
            problems.append(f"{where}: {url} is not the port sluice serve binds ({port})")

    docker_port = bind_port(docker_exec_form(deploy, "ENTRYPOINT") + docker_exec_form(deploy, "CMD"))
    health = [args for word, args in dockerfile(deploy) if word == "HEALTHCHECK"]
    urls = URL.findall(health[-1]) if health else []
    if not urls:
        problems.append("Dockerfile: no HEALTHCHECK with a URL")
    for url in urls:
        check("Dockerfile HEALTHCHECK", url, docker_port)

    services = compose(deploy)["services"]
    for where, argv, service in compose_commands(deploy):
        test = (service.get("healthcheck") or {}).get("test")
        if not test:
            problems.append(f"{where}: no healthcheck")
            continue
        for url in URL.findall(" ".join(as_argv(test))):
            check(f"{where} healthcheck", url, bind_port(argv))
    web_tests = " ".join(as_argv(services.get("web", {}).get("healthcheck", {}).get("test", [])))
    if "/readyz" not in web_tests:
        problems.append("compose.yaml: the web service's healthcheck should ask /readyz")
    for name, needle in (("postgres", "pg_isready"), ("redis", "redis-cli ping")):
        test = " ".join(as_argv(services.get(name, {}).get("healthcheck", {}).get("test", [])))
        if needle not in test:
            problems.append(f"compose.yaml: the {name} service's healthcheck should run {needle}")

    for where, argv, container in kubernetes_commands(deploy):
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = (container.get(probe_name) or {}).get("httpGet")
            if get is None:
                continue
            port = ports.get(get["port"]) if isinstance(get["port"], str) else get["port"]
            if port is None:
                problems.append(f"{where} {probe_name}: no container port named {get['port']!r}")
            check(f"{where} {probe_name}", f"http://127.0.0.1:{port}{get['path']}", bind_port(argv))
    return problems


def examples_check(deploy: Path) -> list[str]:
    """The example server configuration and policies load, as files and inside the ConfigMap."""
    problems = []
    configs = [("server.example.yml", deploy / "server.example.yml")]
    policies = [("policy.example.yml", deploy / "policy.example.yml")]
    with tempfile.TemporaryDirectory() as tmp:
        for path, doc in kubernetes_docs(deploy):
            if doc.get("kind") == "ConfigMap":
                for key, text in (doc.get("data") or {}).items():
                    copy = Path(tmp) / f"{doc['metadata']['name']}-{key}"
                    copy.write_text(text, encoding="utf-8")
                    named = (f"kubernetes/{path.name} data.{key}", copy)
                    if key == "server.yml":
                        configs.append(named)
                    elif key == "policy.yml":
                        policies.append(named)
        for where, path in configs:
            try:
                config = server_config.load_server_config(path, SECRETS)
                config.check_secrets()
            except Exception as exc:
                problems.append(f"{where}: load_server_config fails: {exc}")
                continue
            if config.policy_file is None or config.policy_file.name != "policy.yml":
                problems.append(f"{where}: policy_file should be the mounted policy.yml")
            if not config.repositories:
                problems.append(f"{where}: no repositories (the allowlist)")
            try:  # load_server_config keeps the text; the worker's janitor parses it
                parse_duration(config.janitor_ttl)
            except Exception as exc:
                problems.append(f"{where}: janitor_ttl: {exc}")
        for where, path in policies:
            try:
                load_policy(None, server=path)
            except Exception as exc:
                problems.append(f"{where}: load_policy fails: {exc}")
    text = (deploy / "server.example.yml").read_text(encoding="utf-8")
    for key in sorted(config_keys()):
        if not re.search(rf"^\s*#?\s*(- )?{key}:", text, re.MULTILINE):
            problems.append(f"server.example.yml: does not show the key {key!r}")
    return problems


CHECKS = {"commands": commands_check, "env": env_check, "health": health_check, "examples": examples_check}


# -- tests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_deploy_files(check: str):
    problems = CHECKS[check](DEPLOY)
    assert not problems, "\n".join(problems)


def test_the_derived_names_are_the_real_ones():
    """The code reading above found what load_server_config reads, not an empty set that passes anything."""
    assert {"SLUICE_CONFIG", "SLUICE_STATE_URL", "SLUICE_BROKER_URL", "SLUICE_WORK_DIR",
            "SLUICE_GITLAB_TOKEN", "SLUICE_GITLAB_WEBHOOK_SECRET", "SLUICE_GITHUB_PRIVATE_KEY_PATH",
            "SLUICE_POLICY_FILE", "SLUICE_SWEEP_AFTER"} <= known_env_vars()
    assert "SLUICE_WAREHOUSE_URL" not in known_env_vars()  # the laptop CLI's, not the server's
    assert {"state_url", "webhook_secret", "private_key_path", "clone_url",
            "production_branch"} <= config_keys()
    config = server_config.load_server_config(None, {"SLUICE_SWEEP_AFTER": "7", "SLUICE_WORK_DIR": "/srv/x"})
    assert config.sweep_after == 7 and config.work_dir == Path("/srv/x")


def test_every_yaml_file_parses():
    paths = [DEPLOY / "compose.yaml", DEPLOY / "server.example.yml", DEPLOY / "policy.example.yml",
             *sorted((DEPLOY / "kubernetes").glob("*.yaml"))]
    assert len(paths) > 5
    for path in paths:
        docs = load_yaml_docs(path)
        assert docs and all(isinstance(doc, dict) for doc in docs), path
    for path, doc in kubernetes_docs(DEPLOY):
        assert doc.get("apiVersion") and doc.get("kind"), path
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), path


def test_the_example_server_config_is_what_the_deployments_expect():
    config = server_config.load_server_config(DEPLOY / "server.example.yml", SECRETS)
    assert config.work_dir == Path(WORK_DIR)
    assert config.policy_file == Path(CONFIG_PATH).with_name("policy.yml")
    gitlab, github = config.forge("gitlab"), config.forge("github")
    assert isinstance(gitlab, GitLabConfig) and gitlab.token == SECRETS["SLUICE_GITLAB_TOKEN"]
    assert github is not None and github.webhook_secret == SECRETS["SLUICE_GITHUB_WEBHOOK_SECRET"]
    assert not config.insecure
    text = (DEPLOY / "server.example.yml").read_text(encoding="utf-8")
    for secret in ("token", "webhook_secret", "private_key"):  # secrets stay in the environment
        assert not re.search(rf"^\s*{secret}:", text, re.MULTILINE), secret


def test_the_policy_example_is_the_readmes():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
    block = next(b for b in blocks if b.startswith("# /etc/sluice/policy.yml"))
    assert (DEPLOY / "policy.example.yml").read_text(encoding="utf-8") == block


def test_dockerfile():
    instructions = dockerfile(DEPLOY)
    stages = [args for word, args in instructions if word == "FROM"]
    assert len(stages) >= 2 and any(" AS builder" in s for s in stages), stages
    assert stages[-1].startswith("python:") or "python" in stages[-1]
    assert any(word == "ARG" and args == "PYTHON_VERSION=3.11" for word, args in instructions)
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert "pip wheel" in runs and "apt-get install" in runs and " git " in runs
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert any(word == "VOLUME" and WORK_DIR in args for word, args in instructions)
    assert any(word == "COPY" and "pyproject.toml" in args for word, args in instructions)
    assert docker_exec_form(DEPLOY, "ENTRYPOINT") == ["sluice"]
    assert docker_exec_form(DEPLOY, "CMD") == ["serve", "--config", CONFIG_PATH, "--bind", "0.0.0.0:8000"]


def test_compose():
    spec = compose(DEPLOY)
    services = spec["services"]
    assert {"web", "worker", "redis", "postgres"} <= set(services)
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("web", "worker"):
        service = services[name]
        assert service["env_file"] in (".env", [".env"]) and (DEPLOY / ".env.example").is_file()
        volumes = [str(v) for v in service["volumes"]]
        assert f"work:{WORK_DIR}" in volumes, f"{name} does not share the work volume"
        assert any(v.endswith(f":{CONFIG_PATH}:ro") for v in volumes), f"{name}: config not mounted read-only"
        for dependency in ("postgres", "redis"):
            assert service["depends_on"][dependency]["condition"] == "service_healthy"
    assert "work" in spec["volumes"]
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker, "a fixed name or port stops --scale"
    # Every ${VAR} compose interpolates is in .env.example.
    env_example = (DEPLOY / ".env.example").read_text(encoding="utf-8")
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", env_example, re.MULTILINE))
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (DEPLOY / "compose.yaml").read_text()))
    assert used and used <= documented, used - documented


def test_kubernetes():
    docs = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in kubernetes_docs(DEPLOY)
            if doc["kind"] != "Kustomization"}
    kustomization = load_yaml_docs(DEPLOY / "kubernetes" / "kustomization.yaml")[0]
    for resource in kustomization["resources"]:
        assert (DEPLOY / "kubernetes" / resource).is_file(), resource
    web = docs["Deployment", "sluice-web"]
    worker = docs["Deployment", "sluice-worker"]
    assert web["spec"]["replicas"] == 2
    (web_container,) = pod_containers(web)
    assert web_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    hpa = docs["HorizontalPodAutoscaler", "sluice-worker"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "sluice-worker"}
    assert "replicas" not in worker["spec"], "the HPA owns the worker's replica count"
    service = docs["Service", "sluice-web"]
    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in web_container["ports"]}
    secret = docs["Secret", "sluice-secrets"]
    assert secret["stringData"] and all("change-me" in str(v) for v in secret["stringData"].values())
    for deployment in (web, worker):
        pod = deployment["spec"]["template"]["spec"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            assert container["resources"]["requests"] and container["resources"]["limits"]
            assert {"secretRef": {"name": "sluice-secrets"}} in container["envFrom"]
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            assert mounts["/etc/sluice"]["readOnly"] is True
            assert volumes[mounts["/etc/sluice"]["name"]]["configMap"]["name"] in \
                {name for kind, name in docs if kind == "ConfigMap"}
            assert "emptyDir" in volumes[mounts[WORK_DIR]["name"]], "each pod needs its own work dir"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert ("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in docs
    configmap = docs["ConfigMap", "sluice-config"]
    assert {"server.yml", "policy.yml"} <= set(configmap["data"])


def test_systemd():
    units = systemd_units(DEPLOY)
    assert {"sluice-web.service", "sluice-worker@.service"} <= set(units)
    for name in ("sluice-web.service", "sluice-worker@.service"):
        unit = units[name]
        assert unit["Service.EnvironmentFile"] == ["/etc/sluice/env"]
        assert unit["Service.User"][0] not in ("root", "0")
        assert unit["Service.Restart"] == ["on-failure"]
        assert unit["Service.NoNewPrivileges"] == ["yes"]
        assert unit["Service.ProtectSystem"] == ["strict"]
        assert unit["Service.PrivateTmp"] == ["yes"]
        writable = " ".join(unit["Service.ReadWritePaths"]).split()
        assert WORK_DIR in writable
        assert unit["Install.WantedBy"]


MISTAKES = [
    ("commands", "compose.yaml", '["worker", "--config"', '["wroker", "--config"'),
    ("commands", "compose.yaml", '"--threads", "2"]', '"--thread", "2"]'),
    ("commands", "compose.yaml", '"--workers", "2"', '"--workers", "two"'),
    ("commands", "kubernetes/web-deployment.yaml", '"--log-format", "json"', '"--log-format", "jsn"'),
    ("commands", "Dockerfile", '"--bind", "0.0.0.0:8000"]', '"--bnid", "0.0.0.0:8000"]'),
    ("commands", "systemd/sluice-worker@.service", "sluice worker --config", "sluice workers --config"),
    ("commands", "kubernetes/worker-deployment.yaml", '"--config", "/etc/sluice/server.yml"',
     '"--config", "/etc/sluice/server.yaml"'),
    ("env", ".env.example", "SLUICE_GITLAB_TOKEN=", "SLUICE_GITLAB_TOKN="),
    ("env", "kubernetes/secret.example.yaml", "SLUICE_GITLAB_WEBHOOK_SECRET:",
     "SLUICE_GITLAB_WEBHOOK_SECRETS:"),
    ("env", "compose.yaml", "SLUICE_BROKER_URL: redis", "SLUICE_BROKER: redis"),
    ("health", "kubernetes/web-deployment.yaml", "path: /readyz", "path: /ready"),
    ("health", "Dockerfile", "8000/healthz", "8000/health"),
    ("health", "compose.yaml", "127.0.0.1:8000/readyz", "127.0.0.1:8080/readyz"),
    ("examples", "server.example.yml", "sweep_after: 30", "sweep_afer: 30"),
    ("examples", "server.example.yml", "janitor_ttl: 7d", "janitor_ttl: 7 days"),
    ("examples", "kubernetes/configmap.yaml", "forge: gitlab", "forge: gitlub"),
    ("examples", "policy.example.yml", "{level: block, required: 2", "{level: blocker, required: 2"),
]


@pytest.mark.parametrize(("check", "file", "old", "new"), MISTAKES, ids=[f"{m[0]}-{m[3]}" for m in MISTAKES])
def test_a_mistake_is_caught(tmp_path: Path, check: str, file: str, old: str, new: str):
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    path = copy / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{file} holds {text.count(old)} copies of {old!r}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    assert CHECKS[check](copy), f"the {check} check missed {new!r} in {file}"
