"""Actors (the actors issue)."""
from __future__ import annotations


class ActorClass:
    def __init__(self, cls, options):
        raise NotImplementedError("actors are not implemented yet in raylab")


def kill_actor(actor, no_restart):
    raise NotImplementedError("actors are not implemented yet in raylab")


def get_actor_handle(name, namespace):
    raise NotImplementedError("actors are not implemented yet in raylab")
