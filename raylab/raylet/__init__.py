"""The raylet: one per node. Local scheduler (lease manager), worker pool,
object manager and the node's shared-memory object store."""
