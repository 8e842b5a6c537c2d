"""The worker process: runs tasks and actor methods under leases."""
