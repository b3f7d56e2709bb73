"""The proxy routes under /ak/<access_key>/ (filled in by the proxy package)."""

from ninja import Router

router = Router()
