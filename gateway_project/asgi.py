"""ASGI entry point (`gateway_project.asgi:application`), served by uvicorn."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

application = get_asgi_application()
