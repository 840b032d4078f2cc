"""DiracX workers: the Celery app, the realize task, executors and periodic tasks."""
