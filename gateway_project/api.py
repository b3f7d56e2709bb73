"""The root NinjaAPI objects: the proxy API (mounted under /ak/) and the admin API (/api/)."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import ValidationError as DjangoValidationError
from ninja import NinjaAPI
from ninja.errors import ValidationError

import governance.api as governance_api
from accounts.services import AccountsError
from proxy.api import bearer_router, proxy_unexpected_error
from proxy.api import router as proxy_router
from requestlog.api import router as requestlog_router
from usage.api import router as usage_router
from usage.api import validation_error_response

# The proxy API has no docs page: it is addressed by key-holding clients, not browsed.
proxy_api = NinjaAPI(urls_namespace="proxy", docs_url=None, openapi_url=None)
proxy_api.add_router("", proxy_router)
proxy_api.add_exception_handler(Exception, proxy_unexpected_error)

# The OpenAI-compatible paths under /v1/, with the access key as the bearer token.
openai_api = NinjaAPI(urls_namespace="openai", docs_url=None, openapi_url=None)
openai_api.add_router("", bearer_router)
openai_api.add_exception_handler(Exception, proxy_unexpected_error)

# The admin API: each router authenticates staff itself (session or admin token); the docs page
# and the OpenAPI schema are for logged-in staff only.
admin_api = NinjaAPI(
    title="Gateway admin API",
    urls_namespace="admin_api",
    docs_url="/docs",
    docs_decorator=staff_member_required,
)
admin_api.add_router("/admin/usage", usage_router)
admin_api.add_router("/admin/logs", requestlog_router)
admin_api.add_exception_handler(ValidationError, validation_error_response)
# The management API (governance.api): users, keys, credentials, budgets, limits, state.
admin_api.add_router("/admin/users", governance_api.users_router)
admin_api.add_router("/admin/access-keys", governance_api.keys_router)
admin_api.add_router("/admin/credentials", governance_api.credentials_router)
admin_api.add_router("/admin/routes", governance_api.routes_router)
admin_api.add_router("/admin/budgets", governance_api.budgets_router)
admin_api.add_router("/admin/limits", governance_api.limits_router)
admin_api.add_router("/admin/pools", governance_api.pools_router)
admin_api.add_router("/admin/state", governance_api.state_router)
admin_api.add_exception_handler(governance_api.ApiError, governance_api.api_error_response)
admin_api.add_exception_handler(DjangoValidationError, governance_api.domain_error_response)
admin_api.add_exception_handler(AccountsError, governance_api.domain_error_response)
# The same 400 as the usage API's, also naming a field inside a request body.
admin_api.add_exception_handler(ValidationError, governance_api.validation_error_response)
