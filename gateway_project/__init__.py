"""The gateway's Django project: settings, URLs, ASGI/WSGI entry points and the Celery app
(``gateway_project.celery``).

The Celery app is not imported here, unlike Django projects that send tasks from their views:
no web request sends a task (beat schedules every one), and Celery with its broker libraries
is about 250 modules and 12 MiB in every web worker. ``celery -A gateway_project`` finds the
app in ``gateway_project.celery``, and every tasks module imports it, so code that sends a task
sends it through this app's broker.
"""
