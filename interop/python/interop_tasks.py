"""Celery app and tasks for the Celery interop suite (imported by the worker subprocess).

Tasks report progress on a side channel — lines appended to $INTEROP_OUT_DIR/events.log — so
the test observes completion without relying on a result backend.
"""

import os
import time

from celery import Celery, Task
from celery.signals import worker_ready

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
QUEUE = os.environ.get("INTEROP_CELERY_QUEUE", "interop.celery")
SLOW_QUEUE = os.environ.get("INTEROP_CELERY_SLOW_QUEUE", "interop.celery.slow")
OUT_DIR = os.environ.get("INTEROP_OUT_DIR", "/tmp")

app = Celery("interop_tasks", broker=AMQP_URL, backend="rpc://")
app.conf.update(
    task_default_queue=QUEUE,
    task_routes={"interop.slow": {"queue": SLOW_QUEUE}},
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=3,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    result_expires=60,
)


def emit(line: str) -> None:
    # One write(2) per line with O_APPEND: whole lines even across worker processes.
    fd = os.open(os.path.join(OUT_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@worker_ready.connect
def _ready(sender=None, **_kw):
    emit(f"ready {os.getpid()}")


@app.task(name="interop.record")
def record(i):
    emit(f"record {i}")


@app.task(name="interop.add", ignore_result=False)
def add(x, y):
    return x + y


class ReportingTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        emit(f"flaky {args[0]} FAILED {type(exc).__name__}")

    def on_success(self, retval, task_id, args, kwargs):
        emit(f"flaky {args[0]} OK {retval}")


@app.task(
    name="interop.flaky",
    bind=True,
    base=ReportingTask,
    autoretry_for=(RuntimeError,),
    retry_backoff=1,
    retry_backoff_max=1,
    retry_jitter=False,
    max_retries=3,
)
def flaky(self, key, fail_times):
    emit(f"flaky {key} attempt {self.request.retries}")
    if self.request.retries < fail_times:
        raise RuntimeError(f"planned failure {self.request.retries + 1} of {fail_times}")
    return f"done after {self.request.retries} retries"


@app.task(name="interop.slow", bind=True, acks_late=True)
def slow(self, key):
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    emit(f"slow {key} started {os.getpid()} redelivered={redelivered}")
    if not redelivered:
        time.sleep(60)  # the test kills the worker meanwhile
    emit(f"slow {key} done {os.getpid()} redelivered={redelivered}")
