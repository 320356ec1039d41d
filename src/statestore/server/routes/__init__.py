"""The state server's routes, one module per resource (task state, asset state, admin,
health); :mod:`.keyed` holds what task and asset state share."""
