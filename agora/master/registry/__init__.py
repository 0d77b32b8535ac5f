"""The master's registry stores: where admitted, unreachable and gone agents, weights,
quota and the maintenance schedule are made durable before the master acts on them."""
