"""The GCS (Global Control Service): the cluster's control plane.

Tables: nodes (with health checks), jobs, the function table (a namespace of
the key-value store), actors (with actor scheduling), the resource view, and
in lecture mode the object table. Publishes changes to subscribers.
"""
