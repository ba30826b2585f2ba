"""What every process stands on: settings (read from the environment in one place), logs, the Celery
queue and its Redis transport, rate limits, API credentials and the caller's identity."""
