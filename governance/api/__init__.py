"""The management REST API under /api/admin/ (mounted by gateway_project.api): users, access
keys, provider credentials, routing rules, budgets, limits and the live state.

``auth`` (who may read and write), ``errors`` (400 naming the parameter, 404 for unknown ids),
``accounts`` (users, keys, credentials: through accounts.services), ``pools`` (key pools, their
strategies and members' state), ``routes`` (routing rules:
through proxy.rule_services), ``rules`` (budgets and limits: through governance.services),
``state`` (circuits, budget spend, requests in flight, credential cooldowns).
Endpoints are thin: one service or selector call each.
"""

from governance.api.accounts import credentials_router, keys_router, users_router
from governance.api.errors import (
    ApiError,
    api_error_response,
    domain_error_response,
    validation_error_response,
)
from governance.api.pools import pools_router
from governance.api.routes import routes_router
from governance.api.rules import budgets_router, limits_router
from governance.api.state import state_router

__all__ = [
    "ApiError",
    "api_error_response",
    "budgets_router",
    "credentials_router",
    "domain_error_response",
    "keys_router",
    "limits_router",
    "pools_router",
    "routes_router",
    "state_router",
    "users_router",
    "validation_error_response",
]
