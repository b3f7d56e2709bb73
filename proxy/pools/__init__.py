"""Key pools: which credential of a leg's pool a request uses, and what a failure does to it.

A leg that uses stored credentials carries its pool (``Leg.pool``: every enabled credential of
the most specific scope, see accounts.selectors). ``try_leg`` tries the pool's members in the
order of its strategy (``strategies``), each at most once per request:

- a member cooling down after a 429, or disabled by the gateway since the key's metadata was
  loaded, is not tried; one with an open circuit is tried last; one over its own RPM, TPM or
  concurrency limit (``limits``) is skipped;
- a rate limit (429) cools the member down until the provider's retry hint (never shortening a
  cooldown already running) and the next member is tried;
- an exhausted quota or a refused key (``classify``) disables the member in the database,
  through accounts.services (so every process drops it from its cached pools), and the next
  member is tried; quota-disabled members are probed now and then (``probe``);
- any other failure (5xx, timeouts) counts toward the member's circuit and moves on to the
  plan's next leg, as for a leg without a pool;
- when no member is left and some are cooling down, the leg fails with a 429 whose
  ``retry-after`` is the earliest moment one of them is free again.

A leg with the client's own credential (the Anthropic passthrough) has no pool: nothing here
ever disables or cools down a client's key.

Modules: ``flow`` (the request flow's part), ``classify`` (errors → fault kinds, pure),
``strategies`` (member order, pure), ``state`` (cooldowns, marks and use shared across worker
processes), ``limits`` (a member's exact RPM/TPM/concurrency limits), ``probe`` (re-enables
quota-disabled credentials the provider accepts again).
"""
