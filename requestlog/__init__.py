"""Request logs: one record per proxied request beside its usage event, redacted bodies, media."""
