"""Celery and kombu against Warren: a real worker subprocess (solo pool), 1,000 tasks, autoretry
with back-off, an acks_late task redelivered after its worker is SIGKILLed, `celery inspect
ping` (pidbox fanout + reply queues), the rpc:// result backend, and kombu's SimpleQueue."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
from kombu import Connection, Exchange, Queue

HERE = os.path.dirname(os.path.abspath(__file__))
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
CELERY = os.path.join(os.path.dirname(sys.executable), "celery")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    out = tmp_path_factory.mktemp("celery")
    e = dict(os.environ)
    e.update(
        AMQP_URL=AMQP_URL,
        INTEROP_OUT_DIR=str(out),
        INTEROP_CELERY_QUEUE=f"interop.celery.{uuid.uuid4().hex[:8]}",
        INTEROP_CELERY_SLOW_QUEUE=f"interop.celery.slow.{uuid.uuid4().hex[:8]}",
        PYTHONPATH=HERE + os.pathsep + e.get("PYTHONPATH", ""),
    )
    # The module reads these at import: set them before the test process imports it.
    os.environ.update({k: e[k] for k in ("INTEROP_OUT_DIR", "INTEROP_CELERY_QUEUE", "INTEROP_CELERY_SLOW_QUEUE")})
    return e


@pytest.fixture(scope="module")
def tasks(env):
    sys.path.insert(0, HERE)
    import interop_tasks

    yield interop_tasks
    interop_tasks.app.pool.force_close_all()


def events(env):
    path = os.path.join(env["INTEROP_OUT_DIR"], "events.log")
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def wait_for(what, cond, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class Worker:
    def __init__(self, env, name, queue_var="INTEROP_CELERY_QUEUE"):
        self.env = env
        self.log_path = os.path.join(env["INTEROP_OUT_DIR"], f"worker-{name}.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [
                CELERY, "-A", "interop_tasks", "worker",
                "--pool=solo", "--concurrency=1",
                "-Q", env[queue_var],
                "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
                "--loglevel=INFO",
            ],
            cwd=HERE, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                f"worker {name} ready",
                lambda: self.proc.poll() is not None or f"ready {self.proc.pid}" in events(env),
                45,
            )
        except AssertionError:
            self.stop()
            raise AssertionError(f"worker did not start:\n{self.output()}")
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.output()}")

    def output(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()[-4000:]

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture(scope="module")
def worker(env, tasks):
    w = Worker(env, "main")
    yield w
    w.stop()


def test_thousand_tasks(env, tasks, worker):
    n = 1000
    with tasks.app.producer_or_acquire() as producer:
        for i in range(n):
            tasks.record.apply_async((i,), producer=producer)

    def done():
        got = {l for l in events(env) if l.startswith("record ")}
        return len(got) >= n and got

    got = wait_for(f"{n} tasks", done, 120)
    assert got == {f"record {i}" for i in range(n)}
    # Exactly once each.
    assert sum(1 for l in events(env) if l.startswith("record ")) == n


def test_rpc_result_backend(tasks, worker):
    assert tasks.add.delay(2, 3).get(timeout=20) == 5
    results = [tasks.add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=20) for r in results] == [2 * i for i in range(20)]


def test_autoretry_then_success(env, tasks, worker):
    key = f"ok-{uuid.uuid4().hex[:6]}"
    tasks.flaky.delay(key, 2)
    wait_for("flaky success", lambda: f"flaky {key} OK done after 2 retries" in events(env), 40)
    attempts = [l for l in events(env) if l.startswith(f"flaky {key} attempt")]
    assert attempts == [f"flaky {key} attempt {i}" for i in range(3)]
    assert f"flaky {key} FAILED RuntimeError" not in events(env)


def test_autoretry_gives_up(env, tasks, worker):
    key = f"fail-{uuid.uuid4().hex[:6]}"
    tasks.flaky.delay(key, 99)  # max_retries=3: 4 attempts, then the failure sticks
    wait_for("flaky final failure", lambda: f"flaky {key} FAILED RuntimeError" in events(env), 40)
    attempts = [l for l in events(env) if l.startswith(f"flaky {key} attempt")]
    assert attempts == [f"flaky {key} attempt {i}" for i in range(4)]
    assert not any(l.startswith(f"flaky {key} OK") for l in events(env))


def test_inspect_ping(env, worker):
    r = subprocess.run(
        [CELERY, "-A", "interop_tasks", "inspect", "ping", "--timeout", "5"],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "pong" in r.stdout, r.stdout + r.stderr
    assert "1 node online" in r.stdout, r.stdout
    assert worker_name_fragment(worker) in r.stdout, r.stdout


def worker_name_fragment(w):
    return os.path.basename(w.log_path)[len("worker-"):-len(".log")] + "-"


def test_acks_late_task_redelivered_after_sigkill(env, tasks):
    key = f"slow-{uuid.uuid4().hex[:6]}"
    first = Worker(env, "doomed", "INTEROP_CELERY_SLOW_QUEUE")
    try:
        tasks.slow.delay(key)
        started = wait_for(
            "slow task started",
            lambda: [l for l in events(env) if l.startswith(f"slow {key} started")],
            30,
        )
        assert started == [f"slow {key} started {first.proc.pid} redelivered=False"]
        first.kill()
    finally:
        first.stop()
    second = Worker(env, "rescuer", "INTEROP_CELERY_SLOW_QUEUE")
    try:
        line = f"slow {key} done {second.proc.pid} redelivered=True"
        wait_for("redelivered slow task done", lambda: line in events(env), 30)
        mine = [l for l in events(env) if l.startswith(f"slow {key}")]
        assert mine == [
            f"slow {key} started {first.proc.pid} redelivered=False",
            f"slow {key} started {second.proc.pid} redelivered=True",
            line,
        ]
    finally:
        second.stop()


def test_kombu_simple_queue():
    qname = f"interop.kombu.simple.{uuid.uuid4().hex[:8]}"
    with Connection(AMQP_URL, connect_timeout=10) as conn:
        q = conn.SimpleQueue(qname)
        try:
            q.put({"hello": "world", "n": 1})
            q.put("plain text", serializer="json", headers={"x-app": "interop"})
            m1 = q.get(block=True, timeout=5)
            assert m1.payload == {"hello": "world", "n": 1}
            assert m1.content_type == "application/json"
            m1.ack()
            m2 = q.get(block=True, timeout=5)
            assert m2.payload == "plain text"
            assert m2.headers.get("x-app") == "interop"
            m2.requeue()
            m3 = q.get(block=True, timeout=5)
            assert m3.payload == "plain text"
            assert m3.delivery_info["redelivered"] is True
            m3.ack()
            with pytest.raises(q.Empty):
                q.get(block=True, timeout=0.5)
            assert q.qsize() == 0
        finally:
            # Cancel the consumer before deleting the queue: deleting a queue that has
            # consumers makes the broker send basic.cancel, which py-amqp raises on.
            q.close()
            ch = conn.channel()
            assert ch.queue_delete(qname) == 0
            ch.close()


def test_kombu_producer_consumer_topic():
    ex = Exchange(f"interop.kombu.topic.{uuid.uuid4().hex[:8]}", type="topic", auto_delete=True)
    queue = Queue(f"interop.kombu.q.{uuid.uuid4().hex[:8]}", ex, routing_key="a.*", auto_delete=True)
    got = []
    with Connection(AMQP_URL, connect_timeout=10) as conn:
        with conn.Consumer(queue, callbacks=[lambda body, msg: (got.append(body), msg.ack())]):
            producer = conn.Producer()
            for key, body in (("a.1", "one"), ("b.1", "skip"), ("a.2", "two")):
                producer.publish(body, exchange=ex, routing_key=key, serializer="json", declare=[ex])
            deadline = time.monotonic() + 10
            while len(got) < 2 and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.2)
                except TimeoutError:
                    pass
    assert got == ["one", "two"]
