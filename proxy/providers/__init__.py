"""Upstream providers, one package each, behind the interface of ``proxy.providers.base``.

``registry.PROVIDERS`` maps a provider kind to its implementation; ``proxy.planning`` decides
which of them a request's legs use, and ``proxy.services`` runs the legs.
"""
