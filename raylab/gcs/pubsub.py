"""GCS pubsub: channels ("node", "actor", "resources", "trace", ...) and subscribers.

Raylets and core workers subscribe to the channels they care about; the GCS
publishes node deaths, actor state changes and the resource view there.
"""
from __future__ import annotations


class PubSub:
    def __init__(self):
        self.subscribers: dict[str, list] = {}

    def subscribe(self, channel: str, conn) -> None:
        subs = self.subscribers.setdefault(channel, [])
        if conn not in subs:
            subs.append(conn)

    def unsubscribe_all(self, conn) -> None:
        for subs in self.subscribers.values():
            if conn in subs:
                subs.remove(conn)

    def publish(self, channel: str, method: str, args: tuple) -> int:
        sent = 0
        for conn in list(self.subscribers.get(channel, ())):
            if conn.closed:
                continue
            try:
                conn.send(method, *args)
                sent += 1
            except Exception:
                pass
        return sent
