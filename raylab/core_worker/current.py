"""The core worker of this process (None outside a session).

ObjectRefs report their births and deaths here, so the reference table
counts them; after ``shutdown`` this is None and they report nowhere.
"""
CORE_WORKER = None

DRIVER = "driver"   # the user's process: it owns what it creates, and collects the trace
WORKER = "worker"   # a process a raylet leased out: it runs tasks, or is one actor
