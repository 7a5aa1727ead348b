"""deploy/Dockerfile: linted by hadolint (the image cannot be built on these machines: no base
image can be pulled), read stage by stage, and the server started as the image starts it, on
the web UI where the image puts it."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.ports import free_port
from tests.support.server import server_process, server_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
LINT = ROOT / "scripts" / "lint-dockerfile"
UI_DIST = ROOT / "ui" / "dist"
ADMIN = "image-admin-token-0123456789abcdef"


# -- reading the Dockerfile -----------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                found[key] = value
        return found

    def copies_from(self, stage: str) -> list[tuple[str, str]]:
        """(source, destination) of each ``COPY --from=stage``."""
        found = []
        for args in self.all("COPY"):
            words = args.split()
            if f"--from={stage}" in words:
                source, destination = (w for w in words if not w.startswith("--"))
                found.append((source, destination))
        return found


def stages(text: str) -> list[Stage]:
    """The build stages of a Dockerfile: comments dropped, continuation lines joined."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found: list[Stage] = []
    for line in joined.splitlines():
        keyword, _, args = line.strip().partition(" ")
        if not keyword:
            continue
        if keyword.upper() == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            found.append(Stage(base=words[0], name=name))
        elif found:
            found[-1].instructions.append((keyword.upper(), args.strip()))
    return found


@pytest.fixture(scope="module")
def image() -> list[Stage]:
    return stages(DOCKERFILE.read_text())


# -- hadolint -------------------------------------------------------------------------------------


def lint(
    *dockerfiles: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """scripts/lint-dockerfile, the command scripts/test's hadolint stage runs."""
    return subprocess.run(
        [str(LINT), *map(str, dockerfiles)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=cwd,
        check=False,
    )


def test_the_dockerfile_passes_hadolint() -> None:
    result = lint()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


BAD = """\
FROM python:latest
RUN apt-get update && apt-get install -y curl
RUN pip install requests
WORKDIR app
USER root
"""
# latest tag, unpinned apt package, no --no-install-recommends, apt lists kept, unpinned pip
# package, pip's cache kept, a relative WORKDIR, running as root, a user by name (not a uid).
BAD_CODES = {
    *("DL3007", "DL3008", "DL3015", "DL3009", "DL3013", "DL3042", "DL3000", "DL3002", "DL3066")
}


def test_hadolint_fails_a_known_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD)
    result = lint(bad)
    assert result.returncode != 0
    assert set(re.findall(r"\bDL\d{4}\b", result.stdout)) == BAD_CODES, result.stdout


def test_a_developers_own_hadolint_config_silences_nothing(tmp_path: Path) -> None:
    """The script names deploy/hadolint.yaml: a config in the home directory or the working
    directory that ignores every rule and fails on nothing is not read."""
    ignore_all = f"failure-threshold: none\nignored: [{', '.join(sorted(BAD_CODES))}]\n"
    (tmp_path / ".config").mkdir()
    (tmp_path / ".config" / "hadolint.yaml").write_text(ignore_all)
    (tmp_path / ".hadolint.yaml").write_text(ignore_all)
    bad = tmp_path / "Dockerfile"
    bad.write_text(BAD)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / ".config")}
    result = lint(bad, env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert set(re.findall(r"\bDL\d{4}\b", result.stdout)) == BAD_CODES, result.stdout


# -- the stages -----------------------------------------------------------------------------------


def test_the_ui_is_built_in_a_node_stage_and_the_final_stage_runs_as_a_user(
    image: list[Stage],
) -> None:
    by_name = {stage.name: stage for stage in image}
    python, ui, final = by_name["python"], by_name["ui"], image[-1]
    assert final.name is None
    assert "NODE_IMAGE" in ui.base
    assert any("npm ci" in run for run in ui.all("RUN"))
    assert any("npm run build" in run for run in ui.all("RUN"))
    assert any("-c constraints.txt" in run for run in python.all("RUN"))
    # The final stage: the Python stage's base, only what the other stages made, not root.
    assert final.base == python.base
    assert all("--from=" in args for args in final.all("COPY"))
    assert final.all("ADD") == []
    (user,) = final.all("USER")
    assert user.isdigit()
    assert int(user) != 0
    assert final.all("ENTRYPOINT") == ['["slotpool"]']


def test_the_build_context_leaves_out_local_state() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[ignored.index("*") :].count("*") == 1  # everything, then what the stages copy
    for kept in ("!pyproject.toml", "!README.md", "!constraints.txt", "!src/", "!ui/"):
        assert kept in ignored
    for left_out in ("ui/node_modules/", "ui/dist/"):
        assert left_out in ignored


# -- the server in the image ---------------------------------------------------------------------


def ui_dir_in_image(image: list[Stage]) -> str:
    """Where the image puts the built UI, after checking the server is told that very path."""
    ui = next(stage for stage in image if stage.name == "ui")
    final = image[-1]
    (workdir,) = ui.all("WORKDIR")
    out_dir = re.search(r'outDir:\s*"([^"]+)"', (ROOT / "ui" / "vite.config.ts").read_text())
    assert out_dir is not None
    ((source, destination),) = final.copies_from("ui")
    assert source == f"{workdir}/{out_dir.group(1)}"  # what vite built
    assert final.env()["SLOTPOOL_UI_DIR"] == destination
    return destination


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    root = tmp_path / "image-root"
    root.mkdir()
    return root


@contextlib.contextmanager
def serve(tmp_path: Path, ui_dir: Path) -> Iterator[str]:
    """A server process told ``ui_dir`` the way the image tells it: ``SLOTPOOL_UI_DIR``."""
    port = free_port()
    settings = server_settings(tmp_path, admin=ADMIN, port=port, ui_dir=ui_dir, local_runtime=False)
    with server_process(settings, tmp_path / "server.log", port=port) as server:
        yield server.url


def test_the_server_finds_the_built_ui_where_the_image_puts_it(
    image: list[Stage], image_root: Path, tmp_path: Path
) -> None:
    if not (UI_DIST / "index.html").is_file():
        pytest.fail(f"the UI is not built ({UI_DIST}); run scripts/bootstrap (it builds ui/)")
    placed = image_root / ui_dir_in_image(image).lstrip("/")
    shutil.copytree(UI_DIST, placed)
    asset = next((placed / "assets").glob("*.js"))
    with serve(tmp_path, placed) as url:
        page = httpx.get(f"{url}/")
        assert page.status_code == 200
        assert page.text == (placed / "index.html").read_text()
        script = httpx.get(f"{url}/assets/{asset.name}")
        assert script.status_code == 200
        assert script.content == asset.read_bytes()
        client_route = httpx.get(f"{url}/pools/pool-0123456789abcdef")
        assert client_route.text == page.text


def test_without_a_built_ui_the_server_starts_and_says_so_at_the_root(
    image: list[Stage], image_root: Path, tmp_path: Path
) -> None:
    empty = image_root / ui_dir_in_image(image).lstrip("/")
    empty.mkdir(parents=True)
    with serve(tmp_path, empty) as url:
        root = httpx.get(f"{url}/")
        assert root.status_code == 404
        assert root.headers["content-type"].startswith("text/plain")
        assert "this server has no web UI" in root.text
        assert "SLOTPOOL_UI_DIR" in root.text
        assert str(empty) not in root.text  # the server's paths are logged, not shown
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/docs").status_code == 200
