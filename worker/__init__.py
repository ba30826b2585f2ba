"""The Celery side: the app, its tasks (CA key generation, signing), heartbeats and the sweeper."""
