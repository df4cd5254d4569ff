"""Applications the engine tests run in real worker processes (Celery, gunicorn, uvicorn)."""
