from django.apps import AppConfig


class ProxyConfig(AppConfig):
    name = "proxy"
    verbose_name = "Proxy"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed

        from accounts.keycache import key_cache
        from accounts.models import User
        from proxy.routing import model_aliases, model_map
        from proxy.rule_services import group_membership_changed
        from proxy.rules import routing_rules

        # The per-process routing tables ride the key cache's invalidation: a change saved
        # anywhere (admin, API, command, another worker) reaches every process within a second.
        for table in (routing_rules, model_aliases, model_map):
            key_cache.on_clear(table.invalidate)
        # Routing rules match groups by their members, loaded with the rules: a membership
        # change (the admin's user form saves it as an m2m change) reloads them everywhere.
        m2m_changed.connect(
            group_membership_changed,
            sender=User.groups.through,
            dispatch_uid="proxy.routing_rules.groups",
        )
