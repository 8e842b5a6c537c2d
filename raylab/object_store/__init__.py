"""object_store."""
