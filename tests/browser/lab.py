"""A JupyterLab server that touches nothing of the user's, and the Chromium it is tested with.

``LabServer`` copies the notebooks it is given into a temporary root, points every Jupyter and
IPython folder (config, data, runtime, settings, workspaces) into the same temporary tree, serves
on a free localhost port with a random token, and on exit shuts the server and its kernels down,
even when the test failed (kernels run in their own process session, so psutil ends any that
outlive the server).
"""

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

#: Chromium flags for a quiet, offline, sandbox-free headless run in CI containers.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

#: JupyterLab settings: render every cell (no virtual scrolling) and never ask about news.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
}
SERVER_CONFIG = {
    "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
               "extension_manager": "readonly", "expose_app_in_browser": True},
    "ServerApp": {"open_browser": False},
}


def find_chromium(given=None):
    """Path of a Chromium to drive: ``given``, Debian's /usr/bin/chromium, or one on PATH."""
    for candidate in (given, "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LabServer:
    """``with LabServer(tmp, [notebook], env) as lab: page.goto(lab.url(name))``."""

    def __init__(self, workdir, notebooks, env=None, start_timeout=90):
        self.workdir = Path(workdir)
        self.notebooks = [Path(nb) for nb in notebooks]
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.token = secrets.token_hex(16)
        self.port = None
        self.process = None
        self.log_path = self.workdir / "jupyterlab.log"

    # -- set-up --

    def _prepare(self):
        folders = {name: self.workdir / name for name in
                   ("root", "config", "data", "runtime", "settings", "workspaces", "ipython", "runs")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        for notebook in self.notebooks:
            shutil.copy(notebook, folders["root"] / notebook.name)
        (folders["config"] / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG))
        for name, values in LAB_SETTINGS.items():
            path = folders["settings"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        return folders

    def _environment(self, folders):
        env = {key: value for key, value in os.environ.items() if not key.startswith("JUPYTER")}
        env.update({
            "JUPYTER_CONFIG_DIR": str(folders["config"]),
            "JUPYTER_DATA_DIR": str(folders["data"]),
            "JUPYTER_RUNTIME_DIR": str(folders["runtime"]),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(folders["ipython"]),
            "VAE_HELPERS_RUNS": str(folders["runs"]),
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        return env

    def _command(self, folders):
        return [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
                f"--port={self.port}", "--ServerApp.terminals_enabled=False",
                "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={folders['root']}",
                f"--LabApp.user_settings_dir={folders['settings']}",
                f"--LabApp.workspaces_dir={folders['workspaces']}"]

    def __enter__(self):
        folders = self._prepare()
        self.port = free_port()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self._command(folders), env=self._environment(folders),
                                            cwd=folders["root"], stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def _wait_until_ready(self):
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.api_url("api/status"), timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {self.start_timeout} s:\n{self.log_tail()}")

    # -- use --

    @property
    def root(self):
        """The folder JupyterLab serves, with the notebooks: a notebook's kernel starts in it."""
        return self.workdir / "root"

    def api_url(self, path):
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def url(self, notebook_name):
        """Address that opens ``notebook_name`` (a file in the temporary root) in JupyterLab."""
        return self.api_url(f"lab/tree/{notebook_name}")

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- tear-down --

    def stop(self):
        """Ask the server to shut down (it stops its kernels), then end whatever of it is still running."""
        if self.process is None:
            return
        try:
            processes = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        if self.process.poll() is None:
            try:
                request = urllib.request.Request(self.api_url("api/shutdown"), method="POST", data=b"")
                urllib.request.urlopen(request, timeout=5).close()
            except (urllib.error.URLError, OSError):
                pass
        _, alive = psutil.wait_procs(processes, timeout=15)
        for process in alive:
            process.terminate()
        _, alive = psutil.wait_procs(alive, timeout=5)
        for process in alive:
            process.kill()
        self.process.wait(timeout=5)
