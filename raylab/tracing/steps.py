"""The catalog of protocol steps: each step's name, and its sentence in the lecture's words.

A trace event carries only the step name, the ids and a few details; the
narrative is made here, when a view asks for it, so emitting stays cheap.
The same names appear in the code (``step("raylet", "task", "lease_granted")``),
in trace events and in every view.
"""
from __future__ import annotations

from raylab.tracing.events import TraceEvent

# step name -> sentence template. Fields: {who} (the acting box), {node}, any id
# ({task}, {object}, {worker}, ...) as a short hex, and any detail field.
NARRATIVES = {
    # Step 0: functions
    "export_function": "{who} exports remote function {name} to the GCS function table",
    "export_function_actor": "{who} exports the actor class {name} to the GCS function table",
    "register_function": "GCS registers the function in its function table; workers fetch it "
                         "from there",
    "fetch_function": "{who} fetches the function from the GCS function table",
    # tasks (ownership: Ray 2)
    "submit_task": "{who} submits task {name}() and gets back ObjectRef(s) at once",
    "resolve_dependencies": "{who} resolves {name}'s arguments: every ObjectRef it takes is ready",
    "request_lease": "{who} asks {raylet}'s raylet for a worker lease to run {name} ({why})",
    "schedule_decision": "{who} scheduler picks {to} for {name}: {why}",
    "spillback": "{who} says: spill back, try {to} ({why})",
    "follow_spillback": "{who} follows the spillback and asks {to}'s raylet instead",
    "check_local_args": "{who} checks whether its local object store holds {name}'s "
                        "arguments: {missing} of {args} must be fetched",
    "lease_granted": "{who} grants a lease on worker {worker_label} for {name}",
    "push_task": "{who} pushes {name} straight to the leased worker on {to}",
    "execute_task": "{who} executes {name}()",
    "task_returned": "{who} finishes {name} and replies to the owner with the return value "
                     "inline",
    "task_returned_store": "{who} finishes {name}; its result is in {node}'s object store, "
                           "and the reply tells the owner where",
    "task_finished": "{who} (the owner) stores {name}'s result; anyone waiting in ray.get wakes",
    "task_finished_store": "{who} (the owner) records that {name}'s result {object} is in "
                           "{where}'s object store; anyone waiting in ray.get wakes",
    "task_failed": "{who} records that {name} failed ({error})",
    "return_worker": "{who} returns the leased worker to its raylet",
    "lease_returned": "{who} takes the worker back into its pool",
    "infeasible": "{who} cannot place {name} anywhere: {why}",
    "infeasible_warning": "{who} warns: {name} is infeasible ({why})",
    "unschedulable": "{who} cannot schedule the task: {why}",
    "worker_blocked": "{who} lends the CPU of a worker blocked in ray.get to other tasks",
    "worker_started": "{who} started a worker process",
    "lease_request_failed": "{who}'s lease request failed ({error}); retrying",
    "cancel_task": "{who} interrupts the task (ray.cancel)",
    "worker_exit": "{who} exits ({reason})",
    # objects
    "put_object": "{who} puts {object} ({size}) into its {where}",
    "get_object": "{who} checks its local object store for {object}",
    "get_local_hit": "{who} finds {object} locally",
    "ask_owner": "{who} asks the owner of {object} where it is (a long poll)",
    "owner_replied": "{who} hears from the owner: {object} is ready ({kind})",
    "get_returned": "{who}'s ray.get returns the value of {object}",
    "store_object": "{who} stores {object} ({size}) as the {copy} copy",
    "locate_object": "{who} asks the owner of {object} where its copies are",
    "pull_object": "{to} fetches {object} from {from}'s object store and replicates it "
                   "locally",
    "object_replicated": "{who} has a replica of {object} now ({chunks} chunk(s) from {from})",
    "location_recorded": "{who} (the owner) records that {at} now holds a copy of {object}",
    "evict_replica": "{who} evicts the replica of {object} to make room",
    "spill_object": "{who} is full: it spills {object} ({size}) to disk",
    "restore_object": "{who} restores {object} from its spill file",
    "object_deleted": "{who} deletes its copy of {object}",
    "delete_copies": "{who} (the owner) deletes every copy of {object}",
    "wait_returned": "{who}'s ray.wait returns {ready} ready, {not_ready} not ready",
    "borrower_added": "{who} (owner) records a borrower of {object}",
    "object_freed": "{who} frees {object}: {reason}",
    # the lecture's centralized control plane: global scheduler and GCS object table
    "request_lease_global": "{who} contacts {raylet}'s local scheduler to run {name}, to find "
                            "out which node holds its arguments",
    "task_from_global_scheduler": "{who} (the local scheduler) receives {name} from the "
                                  "global scheduler",
    "check_local_args_global": "{node}'s local scheduler checks whether the local object "
                               "store contains {call}'s arguments; missing: {fetch}",
    "check_local_args_global_all": "{node}'s local scheduler checks whether the local object "
                                   "store contains {call}'s arguments: all are there",
    "lease_granted_global": "{node}'s local scheduler invokes the task function {name}() at "
                            "{node}'s local worker {worker_label}",
    "execute_task_lecture": "{node}'s worker process executes the function code of {name}() "
                            "by accessing locally stored {stored}",
    "execute_task_lecture_plain": "{node}'s worker process executes the function code of "
                                  "{name}()",
    "object_table_lookup_global": "GCS global scheduler performs an object table lookup and "
                                  "finds {at} holds {object}",
    "object_table_lookup_global_miss": "GCS global scheduler performs an object table lookup: "
                                       "no entry for {object} yet",
    "forward_to_global_scheduler": "{who} (the local scheduler) contacts the global scheduler "
                                   "about {name}",
    "global_schedule_request": "GCS global scheduler receives {name} from {from}'s local "
                               "scheduler",
    "object_table_lookup": "GCS object table lookup ({by}): {object} is held by {at}",
    "object_table_lookup_miss": "GCS object table has no entry for {object} yet",
    "global_decision": "GCS global scheduler decides to schedule the task {name} on {to}: "
                       "{why}",
    "register_callback": "GCS object table has no entry for {object} yet: {by} registers a "
                         "callback, to be triggered when the entry is created",
    "object_table_add": "{at}'s object store adds {object}'s entry to the GCS object table",
    "callback_fired": "GCS triggers the callback registered by {to}: {object} is on {at}",
    # actors (lecture: "Actor management")
    "register_actor": "{who} registers the actor {class_name} with the GCS",
    "actor_registered": "GCS adds {class_name} to its actor table",
    "actor_state": "GCS actor table: {class_name} is {state}",
    "schedule_actor": "GCS selects {to}'s raylet for {class_name}, enqueues the actor creation "
                      "request and waits for the raylet to grant a resource lease ({why})",
    "create_actor": "Once the lease is granted on {to}, GCS schedules the actor creation task "
                    "on {to}",
    "actor_alive": "{class_name} is ALIVE on {to}: that worker process is now the actor",
    "submit_actor_task": "{who} submits the actor method call {name}()",
    "submit_actor_task_ready": "{who} asks whether the actor is ready ({name}(), a built-in "
                               "method every actor answers once it is ALIVE)",
    "actor_method_call": "{who} sends {method}() straight to the actor process on {to} "
                         "(not through the GCS)",
    "actor_method_call_ready": "{who} sends the readiness check straight to the actor process "
                               "on {to} (not through the GCS)",
    "execute_task_ready": "{who} answers the readiness check: the actor is ready for calls",
    "actor_died": "GCS learns that {class_name}'s process died ({cause})",
    "actor_restart": "GCS restarts {class_name} (restart {attempt}): its constructor runs again",
    "kill_actor": "GCS kills {class_name} ({reason})",
    # nodes and failures
    "node_registered": "GCS registers node {label} and broadcasts it to the raylets",
    "health_check_missed": "GCS: {label} missed health check {missed}/{threshold}",
    "node_marked_dead": "GCS marks {label} DEAD ({cause}) and broadcasts the death",
    "worker_died": "{who} notices that a worker died",
    "retry_task": "{who} retries {name} (attempt {attempt}: {why})",
    "object_lost": "{who} (the owner) finds every copy of {object} gone (it was on {where})",
    "reconstruct_object": "{who} (the owner) re-executes {name} from its lineage to rebuild "
                          "the lost {object} (attempt {attempt})",
    "kill_node": "chaos: {label} is killed (its raylet, object store and workers)",
    "kill_worker": "chaos: worker {label} is killed",
    "kill_actor_process": "chaos: an actor's process is killed",
    "freeze_node": "chaos: {label} is frozen (SIGSTOP): nothing dies, but it stops answering",
    "thaw_node": "chaos: {label} runs again (SIGCONT)",
    "node_dead_received": "{who} learns from the GCS that {label} is dead",
    "resource_view_broadcast": "GCS broadcasts the cluster resource view to every raylet",
}

# The steps with which a program's own call begins (.remote(), ray.put, ray.get, ray.wait,
# a chaos injection): in the driver they have no cause, they are the roots of their flows.
STARTS_A_CALL = frozenset({
    "export_function", "submit_task", "submit_actor_task", "register_actor", "put_object",
    "get_object", "wait_returned", "kill_node", "kill_worker", "kill_actor_process",
})

_ROLE_NAMES = {"driver": "Driver", "worker": "Worker", "raylet": "raylet", "gcs": "GCS",
               "scheduler": "scheduler", "object_store": "object store",
               "object_manager": "object manager"}


def who(ev: TraceEvent) -> str:
    """The acting box, as the slides say it: "Driver", "N2's raylet", "Worker on N2"."""
    c = ev.component
    if c == "driver":
        return "Driver"
    if c == "gcs":
        return "GCS"
    if c == "worker":
        return f"Worker on {ev.node}" if ev.node else "Worker"
    name = _ROLE_NAMES.get(c, c)
    return f"{ev.node}'s {name}" if ev.node else name


def _variant(ev: TraceEvent) -> str:
    """Some steps read differently by case (a result inline, or in an object store)."""
    if ev.step == "task_finished" and ev.detail.get("where"):
        return "task_finished_store"
    if ev.step == "task_returned" and "store" in (ev.detail.get("returns") or ()):
        return "task_returned_store"
    d = ev.detail
    if d.get("global") and ev.step in ("request_lease", "lease_granted"):
        return ev.step + "_global"
    if ev.step == "check_local_args" and d.get("global"):
        return "check_local_args_global" if d.get("fetch") else "check_local_args_global_all"
    if ev.step == "execute_task" and "stored_args" in d:
        return "execute_task_lecture" if d["stored_args"] else "execute_task_lecture_plain"
    if ev.step == "object_table_lookup" and d.get("scheduler"):
        return "object_table_lookup_global" + ("" if d.get("found") else "_miss")
    if ev.step == "export_function" and ev.flow == "actor":
        return "export_function_actor"
    if str(ev.detail.get("name", "")).endswith(".__ray_ready__") and \
            ev.step + "_ready" in NARRATIVES:  # the built-in readiness check, not a user call
        return ev.step + "_ready"
    return ev.step


def _short(kind: str, hex_id, names=None):
    """Object ids as <creating task>#<index> (sibling returns share their first 8 hex
    characters), or by the name a scenario gives them (``names``: {hex: "a"}); other ids
    as their first 8 hex characters."""
    if not isinstance(hex_id, str):
        return hex_id
    if names and hex_id in names:
        return names[hex_id]
    if kind == "object" and len(hex_id) == 56:
        return f"{hex_id[:8]}#{int.from_bytes(bytes.fromhex(hex_id[48:]), 'little')}"
    return hex_id[:8]


def _human(n) -> str:
    if not isinstance(n, (int, float)):
        return str(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Fields(dict):
    def __missing__(self, key):
        return "?"


# detail fields that hold lists of object ids (shown as "a and b")
_OBJECT_LISTS = ("arg_ids", "fetch", "stored_args")


def _and(words: list) -> str:
    words = [str(w) for w in words]
    if len(words) < 2:
        return "".join(words) or "none"
    return ", ".join(words[:-1]) + " and " + words[-1]


def narrate(ev: TraceEvent, names: dict | None = None) -> str:
    """The event's sentence; ``names`` ({object hex: "a"}) names a scenario's objects."""
    template = ev.detail.get("text") or NARRATIVES.get(_variant(ev))
    if template is None:
        return f"{who(ev)}: {ev.step.replace('_', ' ')}"
    fields = _Fields()
    for k, v in ev.ids.items():
        if v is not None:
            fields[k] = _short(k, v, names)
    for k, v in ev.detail.items():
        if k in _OBJECT_LISTS and isinstance(v, list):
            v = [_short("object", x, names) for x in v]
            fields[k + "_list"] = v
            v = _and(v)
        fields[k] = _human(v) if k == "size" else v
    if "arg_ids_list" in fields:  # add(a, b), as the slide writes the call
        fields["call"] = f"{ev.detail.get('name', '?')}({', '.join(fields['arg_ids_list'])})"
    if "stored_args_list" in fields:
        n = len(fields["stored_args_list"])
        fields["stored"] = ("object " if n == 1 else "objects ") + fields["stored_args"]
    if "copy" not in fields and "primary" in ev.detail:
        fields["copy"] = "primary" if ev.detail["primary"] else "replica"
    fields["who"] = who(ev)
    fields["node"] = ev.node
    try:
        return template.format_map(fields)
    except (ValueError, KeyError, IndexError):
        return f"{who(ev)}: {ev.step.replace('_', ' ')}"
