"""The core worker: the owner side of Ray 2, inside the driver and every worker."""
