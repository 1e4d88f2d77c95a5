"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, for the demo and tests.

The broker's jars come from Maven Central through ``local/pom.xml``; Java
17 runs them. State lives in one directory: ``server.properties``, the
formatted log dirs, ``broker.log`` and ``broker.pid``.

    python -m pipelines.devtools.localkafka start|stop|status|topics
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from pipelines.devtools.localcerts import TlsMaterial, write_tls_material
from pipelines.devtools.localprocess import maven_fetch, running_pid, start_detached, stop_pid
from pipelines.errors import BrokerError
from pipelines.kafka.admin import KafkaConfig, create_topics
from pipelines.resources import repo_root

__all__ = ["LocalKafka", "LocalSecurity", "ensure_broker_jars", "default_broker", "DEFAULT_TOPICS", "free_port", "port_is_free",
           "BrokerError", "SCRAM_MECHANISM"]

SCRAM_MECHANISM = "SCRAM-SHA-512"

DEFAULT_TOPICS = ("app-events", "lifecycle", "flowaudit.violations", "flowaudit.dead-letters")
# Where `run --state-topic` checkpoints closed days: compacted, one partition (one writer, read back whole).
STATE_TOPIC = "flowaudit.state"


def _local_dir() -> Path:
    root = repo_root()
    if root is None:
        raise BrokerError("the local broker is part of the source checkout (local/pom.xml); run from a clone of the repository")
    return root / "local"


def ensure_broker_jars(libs: Path | None = None) -> Path:
    """Resolve the broker jars with Maven once; later calls reuse them."""
    local = _local_dir()
    libs = libs or local / ".kafka" / "libs"
    maven_fetch(local / "pom.xml", "dependency:copy-dependencies", lambda: libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")),
                "the Kafka broker jars", BrokerError)
    return libs


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now on 127.0.0.1 that this process has not handed out
    before: the kernel may give the same ephemeral port to two binds in a
    row (a broker's listener and its controller got one port, seen here)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass(frozen=True)
class LocalSecurity:
    """Secured listeners next to the PLAINTEXT one the local tools use: SASL_SSL
    with SCRAM users (``users``: name -> password, created when the storage is
    formatted) and SSL that requires a client certificate signed by the CA."""

    sasl_port: int
    ssl_port: int
    users: tuple[tuple[str, str], ...]
    tls_dir: Path
    # Principals allowed everything ("User:name", "User:CN=..."): when given,
    # the broker authorizes by ACLs and everyone else needs them. The local
    # tools' PLAINTEXT principal, User:ANONYMOUS, is always one.
    super_users: tuple[str, ...] | None = None
    # Clients on the SASL listener authenticate again this often (KIP-368),
    # so a user deleted or re-keyed is refused within that time, not only on
    # the next connection. None: Kafka's default (never).
    reauth_ms: int | None = None

    @classmethod
    def generate(cls, tls_dir: Path, users: dict[str, str], sasl_port: int | None = None, ssl_port: int | None = None) -> LocalSecurity:
        """New TLS material in ``tls_dir`` and free ports unless given."""

        write_tls_material(tls_dir)
        return cls(sasl_port or free_port(), ssl_port or free_port(), tuple(users.items()), tls_dir)

    def material(self):
        d = self.tls_dir
        return TlsMaterial(d / "ca.pem", d / "broker.pem", d / "client.pem", d / "client.key", d / "client.key.password", "flowaudit-client")


@dataclass
class LocalKafka:
    home: Path
    port: int = 9092
    controller_port: int = 9093
    libs: Path | None = None
    heap: str = "768m"
    security: LocalSecurity | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        assert self.security is not None
        return f"127.0.0.1:{self.security.sasl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        assert self.security is not None
        return f"127.0.0.1:{self.security.ssl_port}"

    def _listener_properties(self) -> list[str]:
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        controller = f"CONTROLLER://127.0.0.1:{self.controller_port}"
        if self.security is None:
            return [f"listeners={plain},{controller}", f"advertised.listeners={plain}",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"]
        sec = self.security
        tls = sec.material()
        secured = f"SASL_SSL://127.0.0.1:{sec.sasl_port},SSL://127.0.0.1:{sec.ssl_port}"
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        return [
            f"listeners={plain},{secured},{controller}",
            f"advertised.listeners={plain},{secured}",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config={scram}",
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={tls.broker_keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={tls.ca_file}",
            "listener.name.ssl.ssl.client.auth=required",
            *([] if sec.reauth_ms is None else [f"listener.name.sasl_ssl.connections.max.reauth.ms={sec.reauth_ms}"]),
            *([] if sec.super_users is None else [
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                "super.users=" + ";".join(("User:ANONYMOUS", *sec.super_users))]),
        ]

    @property
    def _pid_file(self) -> Path:
        return self.home / "broker.pid"

    def _properties(self) -> str:
        data = self.home / "data"
        return "\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            *self._listener_properties(),
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data}",
            "num.partitions=3",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=3",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            # Keep everything: time-based retention goes by record timestamps,
            # and replays, backfills and `summarize` read days long past.
            "log.retention.ms=-1",
            "",
        ])

    def _java(self, main: str, *args: str) -> list[str]:
        libs = self.libs or ensure_broker_jars()
        java = os.environ.get("JAVA_HOME")
        java_bin = str(Path(java) / "bin" / "java") if java else (shutil.which("java") or "java")
        log4j = _local_dir() / "log4j2.yaml"
        return [java_bin, f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", f"-Dkafka.logs.dir={self.home}",
                "-cp", f"{libs}/*", main, *args]

    def format(self) -> None:
        """Write the config and format storage, once."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.properties").write_text(self._properties())
        if (self.home / "data" / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # SCRAM users are written into the metadata log as it is formatted.
        scram = [f"--add-scram={SCRAM_MECHANISM}=[name={name},password={password}]"
                 for name, password in (self.security.users if self.security else ())]
        # One id in 64 starts with "-"; as a separate argument it reads as an option.
        result = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
                                           "-c", str(self.home / "server.properties"), *scram),
                                capture_output=True, text=True)
        if result.returncode != 0:
            failed = result.stdout + result.stderr
            for _, password in self.security.users if self.security else ():
                failed = failed.replace(password, "***")
            raise BrokerError(f"kafka-storage format failed:\n{failed}")

    def running_pid(self) -> int | None:
        return running_pid(self._pid_file)

    def start(self, timeout: float = 90.0) -> None:
        if self.running_pid():
            self.wait_ready(timeout)
            return
        self.format()
        process = start_detached(self._java("kafka.Kafka", str(self.home / "server.properties")), self.home / "broker.log", self._pid_file)
        self.wait_ready(timeout, process)

    def wait_ready(self, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
        """Until a client can list topics over the wire."""

        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                raise BrokerError(f"the broker exited with status {process.returncode}; see {self.home / 'broker.log'}")
            if port_is_free(self.port):  # not listening yet: a client would only log refused connections
                last_error = ConnectionRefusedError(f"nothing listens on {self.bootstrap} yet")
                time.sleep(0.5)
                continue
            try:
                admin = KafkaAdminClient(bootstrap_servers=[self.bootstrap], request_timeout_ms=5000)
                admin.list_topics()
                admin.close()
                return
            except (KafkaError, OSError, ValueError) as exc:
                last_error = exc
                time.sleep(0.5)
        raise BrokerError(f"the broker on {self.bootstrap} was not ready within {timeout:.0f}s ({last_error}); see {self.home / 'broker.log'}")

    def stop(self, timeout: float = 30.0) -> None:
        stop_pid(self._pid_file, timeout)


def default_broker() -> LocalKafka:
    """The broker of ``local/kafka``: its home and ports, or those of the environment."""
    home = Path(os.environ.get("FLOWAUDIT_KAFKA_HOME", _local_dir() / ".kafka" / "broker"))
    return LocalKafka(home=home, port=int(os.environ.get("FLOWAUDIT_KAFKA_PORT", "9092")),
                      controller_port=int(os.environ.get("FLOWAUDIT_KAFKA_CONTROLLER_PORT", "9093")))


def ensure_scram_user(broker: LocalKafka, user: str, password: str) -> None:
    """Create or reset a SCRAM user over the PLAINTEXT listener (a storage
    formatted before ``--secure`` has no users of its own)."""

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password.encode())
    try:
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)
    except KafkaException as exc:
        raise BrokerError(f"could not create the SCRAM user {user!r}: {exc.args[0].str()}") from None


def _secure(broker: LocalKafka) -> tuple[str, Path]:
    """TLS material and the ``flowaudit`` SCRAM user's password file in the broker's home (made once)."""


    tls_dir = broker.home / "tls"
    if not (tls_dir / "ca.pem").exists():
        write_tls_material(tls_dir)
    password_file = tls_dir / "flowaudit.password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(24))
        os.chmod(password_file, 0o600)
    password = password_file.read_text()
    broker.security = LocalSecurity(int(os.environ.get("FLOWAUDIT_KAFKA_SASL_PORT", "9094")),
                                    int(os.environ.get("FLOWAUDIT_KAFKA_SSL_PORT", "9095")), (("flowaudit", password),), tls_dir)
    return password, password_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="local/kafka", description="Run the local single-node Kafka (KRaft) on 127.0.0.1.")
    parser.add_argument("command", choices=["jars", "start", "stop", "status", "topics"])
    parser.add_argument("--partitions", type=int, default=3, help="partitions of each topic created by 'topics'")
    parser.add_argument("--secure", action="store_true",
                        help="start: also a SASL_SSL listener (SCRAM-SHA-512 user 'flowaudit', port $FLOWAUDIT_KAFKA_SASL_PORT or 9094) "
                             "and a mutual-TLS one ($FLOWAUDIT_KAFKA_SSL_PORT or 9095), certificates made in HOME/tls")
    args = parser.parse_args(argv)
    try:
        if args.command == "jars":
            print(ensure_broker_jars())
            return 0
        broker = default_broker()
        if args.command == "start":
            if args.secure and broker.running_pid():
                raise BrokerError("the broker is running already: stop it to start it with secured listeners")
            password_file = None
            if args.secure:
                password, password_file = _secure(broker)
            broker.start()
            print(f"kafka ready on {broker.bootstrap} (home {broker.home})")
            if password_file is not None:
                ensure_scram_user(broker, "flowaudit", password)
                tls = broker.security.material()
                print(f"SASL_SSL on {broker.sasl_bootstrap}: --security-protocol SASL_SSL --sasl-username flowaudit "
                      f"--sasl-password-file {password_file} --ssl-cafile {tls.ca_file}")
                print(f"mutual TLS on {broker.ssl_bootstrap}: --security-protocol SSL --ssl-cafile {tls.ca_file} "
                      f"--ssl-certfile {tls.client_cert} --ssl-keyfile {tls.client_key} --ssl-key-password-file {tls.client_key_password_file}")
        elif args.command == "stop":
            broker.stop()
            print("kafka stopped")
        elif args.command == "status":
            pid = broker.running_pid()
            print(f"kafka running, pid {pid}, {broker.bootstrap}" if pid else "kafka not running")
            return 0 if pid else 1
        elif args.command == "topics":
            create_topics(KafkaConfig(broker.bootstrap), DEFAULT_TOPICS, args.partitions)
            create_topics(KafkaConfig(broker.bootstrap), [STATE_TOPIC], 1, topic_configs={"cleanup.policy": "compact"})
            print(f"topics ready: {', '.join(DEFAULT_TOPICS)} ({args.partitions} partitions), {STATE_TOPIC} (1 partition, compacted)")
    except BrokerError as exc:
        print(f"local/kafka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
