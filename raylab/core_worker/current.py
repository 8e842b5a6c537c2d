"""The core worker of this process (None outside a session).

ObjectRefs report their births and deaths here, so the reference table
counts them; after ``shutdown`` this is None and they report nowhere.
"""
CORE_WORKER = None
