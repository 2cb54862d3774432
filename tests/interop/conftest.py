"""Fixtures: start the real sluice binary and the real mock upstream on ephemeral ports.

Binaries come from SLUICE_BIN / LOADGEN_BIN (set by scripts/test.sh) or target/debug.
Every wait is on an event (a ready line on stdout) with a deadline; no sleeps.
"""

import os
import pathlib
import queue
import subprocess
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SLUICE = os.environ.get("SLUICE_BIN", str(ROOT / "target" / "debug" / "sluice"))
LOADGEN = os.environ.get("LOADGEN_BIN", str(ROOT / "target" / "debug" / "sluice-loadgen"))
DEADLINE = 20


class Proc:
    def __init__(self, args, ready_prefix, env=None):
        self.p = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.lines = queue.Queue()
        self.stderr = []
        threading.Thread(target=self._pump_out, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()
        try:
            while True:
                line = self.lines.get(timeout=DEADLINE)
                if line is None:
                    raise RuntimeError("exited before ready: " + "".join(self.stderr))
                if line.startswith(ready_prefix):
                    self.ready_line = line.strip()
                    break
        except queue.Empty:
            self.stop()
            raise RuntimeError("not ready in time: " + "".join(self.stderr))

    def _pump_out(self):
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self):
        for line in self.p.stderr:
            self.stderr.append(line)

    def stop(self):
        self.p.kill()
        self.p.wait(timeout=DEADLINE)


def start_mock(*args):
    m = Proc([LOADGEN, "mock", "--listen", "127.0.0.1:0", *args], "listening on ")
    m.addr = m.ready_line.removeprefix("listening on ").strip()
    return m


def start_sluice(config_text, driver):
    d = tempfile.mkdtemp(prefix="sluice-py-")
    path = pathlib.Path(d) / "sluice.toml"
    path.write_text(config_text)
    s = Proc([SLUICE, "run", "--config", str(path), "--io-driver", driver], "sluice listening ")
    parts = dict(p.split("=", 1) for p in s.ready_line.split()[2:])
    s.addr = parts["client"].split(",")[0]
    s.admin = parts["admin"]
    return s


def gateway_config(mock_addr):
    return f"""
[server]
listen = ["127.0.0.1:0"]
admin = "127.0.0.1:0"
workers = 2

[backends.local]
provider = "openai"
base_url = "http://{mock_addr}/v1"

[backends.builtin]
provider = "mock"

[models."gpt-4o-mini"]
targets = [{{ backend = "local", model = "mock-small" }}]

[models.mock]
targets = [{{ backend = "builtin" }}]
"""


@pytest.fixture(scope="module", params=["uring", "epoll"])
def gateway(request):
    mock = start_mock()
    gw = start_sluice(gateway_config(mock.addr), request.param)
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture
def client(gateway):
    import openai

    return openai.OpenAI(base_url=f"http://{gateway.addr}/v1", api_key="sk-anything", max_retries=0, timeout=DEADLINE)
