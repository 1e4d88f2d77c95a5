"""A real schema registry on 127.0.0.1 for the demo and tests: Apicurio
Registry, serving the Confluent-compatible API at ``/apis/ccompat/v7``.

Its ready Quarkus application comes from Maven Central through
``local/apicurio/pom.xml`` (nothing else is downloaded); it needs Java 21 or
newer, found by ``registry_java``. It keeps its schemas in an H2 file in its
home (Apicurio's default is in memory), so a restart keeps every id that
messages on the topics refer to. Apicurio's defaults differ from Confluent's in ways that matter here:
it listens on every interface (bound to 127.0.0.1 below, its management port
too) and its default compatibility is NONE (set to BACKWARD once it is up,
as a Confluent registry has it).

    python -m pipelines.devtools.localregistry fetch|start|stop|status
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pipelines.devtools.localcerts import TlsMaterial
from pipelines.devtools.localkafka import free_port, port_is_free
from pipelines.devtools.localprocess import maven_fetch, running_pid, start_detached, stop_pid
from pipelines.errors import LocalServiceError
from pipelines.resources import repo_root

__all__ = ["LocalRegistry", "RegistryError", "ensure_registry_app", "registry_java", "default_registry", "APICURIO_VERSION",
           "CCOMPAT_PATH"]

APICURIO_VERSION = "3.3.3"
CCOMPAT_PATH = "/apis/ccompat/v7"
MINIMUM_JAVA = 21


class RegistryError(LocalServiceError):
    """The local registry could not be fetched, started or reached."""

    def describe(self) -> str:
        return f"local schema registry: {self}"


def _local_dir() -> Path:
    root = repo_root()
    if root is None:
        raise RegistryError("the local registry is part of the source checkout (local/apicurio/pom.xml); run from a clone of the repository")
    return root / "local"


def ensure_registry_app(app: Path | None = None) -> Path:
    """The unpacked Apicurio application (``quarkus-run.jar`` inside), fetched with Maven once."""
    local = _local_dir()
    app = app or local / ".registry" / f"apicurio-{APICURIO_VERSION}"
    maven_fetch(local / "apicurio" / "pom.xml", "package", lambda: (app / "quarkus-run.jar").is_file(),
                f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION} (all, tar.gz)", RegistryError)
    return app


def _feature_version(java_home: Path) -> int | None:
    """The Java feature release of a JDK or JRE home, from its ``release`` file."""
    try:
        text = (java_home / "release").read_text()
    except OSError:
        return None
    found = re.search(r'^JAVA_VERSION="(\d+)', text, re.MULTILINE)
    return int(found.group(1)) if found else None


def registry_java() -> str:
    """A ``java`` of release 21 or newer: $FLOWAUDIT_REGISTRY_JAVA, else
    $JAVA_HOME's, the one on PATH, or one in /usr/lib/jvm or /opt (where
    Debian and Temurin packages put them)."""
    given = os.environ.get("FLOWAUDIT_REGISTRY_JAVA")
    if given:
        return given
    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    for root in (Path("/usr/lib/jvm"), Path("/opt")):
        if root.is_dir():
            homes.extend(sorted(root.iterdir(), reverse=True))
    seen: list[str] = []
    for home in homes:
        version = _feature_version(home)
        if version is not None:
            seen.append(f"{home} ({version})")
        if version is not None and version >= MINIMUM_JAVA and (home / "bin" / "java").is_file():
            return str(home / "bin" / "java")
    raise RegistryError(f"Apicurio Registry needs Java {MINIMUM_JAVA} or newer; found {', '.join(seen) or 'no JDK'}: "
                        "install one, or set FLOWAUDIT_REGISTRY_JAVA to its bin/java")


@dataclass
class LocalRegistry:
    home: Path
    port: int = 8081
    management_port: int = 9001
    app: Path | None = None
    heap: str = "256m"
    tls: TlsMaterial | None = None  # HTTPS only, with this CA's server certificate for 127.0.0.1

    @property
    def url(self) -> str:
        """The Confluent-compatible API's base URL, what ``--schema-registry-url`` takes."""
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{CCOMPAT_PATH}"

    @property
    def _pid_file(self) -> Path:
        return self.home / "registry.pid"

    def _command(self) -> list[str]:
        app = self.app or ensure_registry_app()
        listen = [f"-Dquarkus.http.port={self.port}"]
        if self.tls is not None:
            # The server's PKCS#8 key and its chain, in one PEM file (as the local broker's key store).
            listen = [f"-Dquarkus.http.ssl-port={self.port}", "-Dquarkus.http.insecure-requests=disabled",
                      f"-Dquarkus.http.ssl.certificate.files={self.tls.broker_keystore}",
                      f"-Dquarkus.http.ssl.certificate.key-files={self.tls.broker_keystore}"]
        return [registry_java(), f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
                "-Dquarkus.http.host=127.0.0.1", *listen,
                "-Dquarkus.management.host=127.0.0.1", f"-Dquarkus.management.port={self.management_port}",
                # Schemas outlive a restart, as the broker's topics do: messages
                # still on a topic name their writer schema's id.
                f"-Dapicurio.datasource.url=jdbc:h2:file:{self.home / 'data' / 'registry'}",
                # No usage reports or update checks leave this machine.
                "-Dquarkus.analytics.disabled=true",
                "-jar", str(app / "quarkus-run.jar")]

    def running_pid(self) -> int | None:
        return running_pid(self._pid_file)

    def start(self, timeout: float = 90.0) -> None:
        """Start (or find running) and wait until the Confluent API answers, compatibility BACKWARD."""
        self.home.mkdir(parents=True, exist_ok=True)
        if self.running_pid():
            self.wait_ready(timeout)
            return
        for port in (self.port, self.management_port):
            if not port_is_free(port):
                raise RegistryError(f"port {port} on 127.0.0.1 is taken: stop what listens there, or set "
                                    "FLOWAUDIT_REGISTRY_PORT / FLOWAUDIT_REGISTRY_MANAGEMENT_PORT")
        process = start_detached(self._command(), self.home / "registry.log", self._pid_file, cwd=self.home)
        try:
            self.wait_ready(timeout, process)
        except RegistryError:
            self.stop()
            raise

    def _request(self, method: str, path: str, body: dict | None = None) -> dict | list:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        context = ssl.create_default_context(cafile=str(self.tls.ca_file)) if self.tls else None
        with urllib.request.urlopen(request, timeout=5, context=context) as response:
            return json.loads(response.read() or b"null")

    def wait_ready(self, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise RegistryError(f"the registry exited with status {process.returncode}; see {self.home / 'registry.log'}")
            if port_is_free(self.port):
                last_error = ConnectionRefusedError(f"nothing listens on 127.0.0.1:{self.port} yet")
                time.sleep(0.5)
                continue
            try:
                self._request("GET", "/subjects")
                self._request("PUT", "/config", {"compatibility": "BACKWARD"})
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                last_error = exc
                time.sleep(0.5)
        raise RegistryError(f"the registry on {self.url} was not ready within {timeout:.0f}s ({last_error}); see {self.home / 'registry.log'}")

    def stop(self, timeout: float = 30.0) -> None:
        stop_pid(self._pid_file, timeout)


def default_registry() -> LocalRegistry:
    """The registry of ``local/registry``: its home and ports, or those of the environment."""
    home = Path(os.environ.get("FLOWAUDIT_REGISTRY_HOME", _local_dir() / ".registry" / "run"))
    return LocalRegistry(home=home, port=int(os.environ.get("FLOWAUDIT_REGISTRY_PORT", "8081")),
                         management_port=int(os.environ.get("FLOWAUDIT_REGISTRY_MANAGEMENT_PORT", "9001")))


def fresh_registry(home: Path, tls: TlsMaterial | None = None) -> LocalRegistry:
    """A registry of its own on free loopback ports (tests, a demo beside another one)."""
    return LocalRegistry(home=home, port=free_port(), management_port=free_port(), tls=tls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local/registry",
                                     description="Run the local schema registry (Apicurio, Confluent-compatible API) on 127.0.0.1.")
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            print(ensure_registry_app())
            return 0
        registry = default_registry()
        if args.command == "start":
            registry.start()
            print(f"schema registry ready on {registry.url} (compatibility BACKWARD; home {registry.home})")
        elif args.command == "stop":
            registry.stop()
            print("schema registry stopped")
        elif args.command == "status":
            pid = registry.running_pid()
            print(f"schema registry running, pid {pid}, {registry.url}" if pid else "schema registry not running")
            return 0 if pid else 1
    except RegistryError as exc:
        print(f"local/registry: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
