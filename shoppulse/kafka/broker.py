"""A single-node Apache Kafka (KRaft) on 127.0.0.1, from Maven Central jars, on the local JVM.

Used by `shoppulse kafka`, `shoppulse demo` and the pytest `kafka_broker` fixture.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ShoppulseError

KAFKA_VERSION = "4.1.1"


class KafkaSetupError(ShoppulseError):
    """An expected failure (missing Java, port taken...) with a message for the user."""


def cache_dir() -> Path:
    base = os.environ.get("SHOPPULSE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "shoppulse")
    return Path(base)


def jars_dir() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "libs"


INSTALL_JAVA = (
    "The local Kafka broker runs on Java 17 or newer. Install it (Debian/Ubuntu: `sudo apt-get install "
    "openjdk-17-jre-headless`; Fedora: `sudo dnf install java-17-openjdk-headless`; macOS: `brew install openjdk@17`), "
    "or put an existing JDK's bin directory on PATH. Or skip the local broker: use your own with --broker HOST:PORT."
)
INSTALL_MAVEN = (
    "Maven fetches the Kafka broker jars once, into the shoppulse cache. Install it (Debian/Ubuntu: `sudo apt-get "
    "install maven`; Fedora: `sudo dnf install maven`; macOS: `brew install maven`), or put its bin directory on PATH."
)


def _require(tool: str, how: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise KafkaSetupError(f"`{tool}` was not found on PATH. {how}")
    return path


def ensure_jars(progress=None) -> Path:
    """Fetch the broker jars with Maven once; later calls return the cached directory.

    `progress(done_artifacts, line)` is called as Maven reports each download.
    """
    target = jars_dir()
    marker = target / ".complete"
    if marker.exists():
        return target
    mvn = _require("mvn", INSTALL_MAVEN)
    _require("java", INSTALL_JAVA)
    target.mkdir(parents=True, exist_ok=True)
    with resources.as_file(resources.files(__package__) / "pom.xml") as pom:
        cmd = [
            mvn,
            "-B",
            "-f",
            str(pom),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={target}",
            "-DincludeScope=runtime",
            f"-Dkafka.version={KAFKA_VERSION}",
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        done, tail = 0, list[str]()
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line.rstrip()])[-30:]
            if "Downloaded from" in line or "Copying" in line:
                done += 1
                if progress:
                    progress(done, line.strip())
        if proc.wait() != 0:
            raise KafkaSetupError(
                "Maven could not fetch the Kafka jars. Check that Maven Central is reachable.\n" + "\n".join(tail)
            )
    marker.write_text(KAFKA_VERSION)
    return target


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1: all sockets stay bound until every port is picked,
    so the kernel can't hand out one port twice."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return free_ports(1)[0]


def port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


LOG4J2 = """\
Configuration:
  Appenders:
    RollingFile:
      name: File
      fileName: "{log_dir}/server.log"
      filePattern: "{log_dir}/server.log.%i"
      PatternLayout: {{pattern: "[%d] %p %m (%c)%n"}}
      Policies: {{SizeBasedTriggeringPolicy: {{size: 20MB}}}}
      DefaultRolloverStrategy: {{max: 2}}
  Loggers:
    Root: {{level: INFO, AppenderRef: [{{ref: File}}]}}
"""


@dataclass
class LocalKafka:
    """One KRaft broker+controller process. Use as a context manager or call start()/stop()."""

    port: int = 9092
    data_dir: Path = field(default_factory=lambda: cache_dir() / "kafka-data")
    # SCRAM users {name: password}: adds a SASL_PLAINTEXT listener on `sasl_port`.
    scram_users: dict[str, str] = field(default_factory=dict)
    sasl_port: int | None = None
    # KRaft cluster id: 16 random bytes in URL-safe base64, so about 1 in 64 starts with "-".
    cluster_id: str = field(default_factory=lambda: _new_cluster_id())
    process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def _properties(self, controller_port: int) -> str:
        listeners = [f"PLAINTEXT://127.0.0.1:{self.port}", f"CONTROLLER://127.0.0.1:{controller_port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        advertised = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        extra = []
        if self.scram_users:
            listeners.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            extra = [
                "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512",
                "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            ]
        return (
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
                    "listeners=" + ",".join(listeners),
                    "advertised.listeners=" + ",".join(advertised),
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=" + ",".join(protocols),
                    f"log.dirs={self.data_dir / 'logs'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "group.initial.rebalance.delay.ms=0",
                    # Source topics are created by shoppulse with the configured partition counts.
                    "auto.create.topics.enable=false",
                    *extra,
                ]
            )
            + "\n"
        )

    def start(self, timeout: float = 90.0) -> LocalKafka:
        java = _require("java", INSTALL_JAVA)
        libs = ensure_jars()
        if self.port != 0 and port_in_use(self.port):
            raise KafkaSetupError(
                f"Port {self.port} on 127.0.0.1 is already taken (another Kafka?). "
                "Pick another with --port N, or --port 0 for a free one."
            )
        # Up to three ports are needed; five leave room for any that equal a given one.
        spare = [p for p in free_ports(5) if p not in (self.port, self.sasl_port)]
        controller_port = spare.pop()
        if self.port == 0:
            self.port = spare.pop()
        if self.scram_users and not self.sasl_port:
            self.sasl_port = spare.pop()
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(self._properties(controller_port))
        log4j = self.data_dir / "log4j2.yaml"
        log4j.write_text(LOG4J2.format(log_dir=self.data_dir))
        classpath = str(libs / "*")
        java_opts = [f"-Dlog4j2.configurationFile={log4j}", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC"]
        meta = self.data_dir / "logs" / "meta.properties"
        if not meta.exists():
            # A fresh data dir must be formatted with a cluster id; SCRAM users are bootstrapped here.
            fmt = [
                java,
                *java_opts,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.cluster_id}",
                "-c",
                str(config),
            ]
            # "--cluster-id=ID", not "-t ID": argparse would read an id starting with "-" as a flag.
            for user, password in self.scram_users.items():
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    fmt += ["--add-scram", f"{mech}=[name={user},password={password}]"]
            result = subprocess.run(fmt, capture_output=True, text=True)
            if result.returncode != 0:
                raise KafkaSetupError(
                    f"Formatting the Kafka data dir {self.data_dir} failed:\n{result.stdout}{result.stderr}"
                )
        self._log = open(self.data_dir / "stdout.log", "ab")
        self.process = subprocess.Popen(
            [java, *java_opts, "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        server_log = self.data_dir / "server.log"
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise KafkaSetupError(f"Kafka exited with code {self.process.returncode}. Log:\n{_tail(server_log)}")
            started = server_log.exists() and re.search(r"Kafka Server started", _tail(server_log, 200))
            if started and port_in_use(self.port):
                return
            time.sleep(0.2)
        self.stop()
        raise KafkaSetupError(f"Kafka did not start within {timeout:.0f} s. Log:\n{_tail(server_log)}")

    def stop(self, timeout: float = 30.0) -> None:
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()

    def __enter__(self) -> LocalKafka:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _new_cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log yet)"
