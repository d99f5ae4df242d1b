"""The REST API: one Powertools resolver, routers per resource, one error mapping."""
