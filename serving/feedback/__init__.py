"""Ground-truth feedback: the label log, the live join in the gateway, the offline join."""
