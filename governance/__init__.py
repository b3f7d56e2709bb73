"""Governance: budgets and rate limits per access key and user, enforced on the proxy's hot path.

``models`` (Budget, RateLimit), ``services`` (writes, one invalidation path), ``selectors``
(reads: the policy of a key, budget spend seeds), ``periods`` (calendar and window arithmetic,
pure), ``counters`` (the Redis script and its in-process twin), ``enforcement`` (what the proxy
calls before and after a request), ``api`` (the management REST API), ``admin``.
"""
