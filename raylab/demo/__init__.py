"""Lecture demos: the lecture's scenarios, run on the real cluster and narrated."""
