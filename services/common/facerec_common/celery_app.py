"""The one Celery configuration every service uses, gateway included."""

from celery import Celery

from facerec_common.names import PRIORITY_SEPARATOR, PRIORITY_STEPS, TASK_QUEUES


def make_celery(main: str, redis_url: str, visibility_timeout_s: int = 600) -> Celery:
    """``visibility_timeout_s``: how long a consumed, unacknowledged task waits before the
    broker hands it out again. Heartbeats and the reaper bring back a dead worker's task
    within seconds; this is the backstop, so it must exceed the slowest stage's limit."""
    app = Celery(main, broker=redis_url, set_as_current=False)
    app.conf.update(
        # Binary payloads (crops, vectors) travel as msgpack bytes: no pickle, no JSON floats.
        task_serializer="msgpack",
        accept_content=["msgpack"],
        result_serializer="msgpack",
        # Results go to the job record in Redis, never to Celery's result backend.
        task_ignore_result=True,
        task_store_errors_even_if_ignored=False,
        # A task is acknowledged only once done, and redelivered if its worker dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes={name: {"queue": str(queue)} for name, queue in TASK_QUEUES.items()},
        task_default_queue="detect",
        broker_connection_retry_on_startup=True,
        # A worker waits for Redis as long as it takes (a restart, a failover), instead of
        # exiting after Celery's default 100 tries.
        broker_connection_max_retries=None,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            # kombu's default of 10 connections per process refuses the 11th concurrent
            # send ("Too many connections"); the gateway sends from up to 40 threads.
            "max_connections": 128,
            # Two levels: interactive (0, consumed first) and batch (names.BATCH_PRIORITY).
            "priority_steps": PRIORITY_STEPS,
            "sep": PRIORITY_SEPARATOR,
            "queue_order_strategy": "priority",
        },
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_enable_remote_control=False,
    )
    return app
