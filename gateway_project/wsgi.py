"""WSGI entry point, for tools that need one; the gateway itself is served over ASGI."""

import os

from django.core.wsgi import get_wsgi_application

from gateway_project.envparse import exit_on_bad_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

# A bad environment value stops the server with one line naming the variable.
with exit_on_bad_environment():
    application = get_wsgi_application()
