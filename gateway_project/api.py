"""The root NinjaAPI objects: the proxy API (mounted under /ak/) and the admin API (/api/)."""

from ninja import NinjaAPI

from proxy.api import router as proxy_router

# The proxy API has no docs page: it is addressed by key-holding clients, not browsed.
proxy_api = NinjaAPI(urls_namespace="proxy", docs_url=None, openapi_url=None)
proxy_api.add_router("", proxy_router)
