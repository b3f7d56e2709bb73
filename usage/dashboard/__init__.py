"""The usage dashboard in Django Admin: views (views), filter form (forms), SVG charts (charts)
and CSV exports (export). Numbers come from usage.selectors, which read aggregates only, except
the list of usage without a price (raw events: see usage.selectors.usage_unpriced)."""
