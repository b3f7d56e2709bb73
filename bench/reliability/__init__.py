"""Long reliability runs: a PostgreSQL outage under load, and a soak through every failure."""
