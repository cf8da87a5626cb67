"""Placement groups (Ray's `ray.util.placement_group`): bundles of
resources reserved together, all or none, by one of Ray's four strategies;
tasks and actors run in them with `PlacementGroupSchedulingStrategy`.

    pg = fabric.placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK")
    fabric.get(pg.ready())
    f.options(scheduling_strategy=fabric.PlacementGroupSchedulingStrategy(pg, 0)).remote()
    fabric.remove_placement_group(pg)
"""

import math

from wit_world.imports import host, types
from componentize_py_types import Err

from . import errors
from ._values import ObjectRef, id_bytes
from ._wit import raise_error

_STRATEGIES = {
    "PACK": types.BundleStrategy.PACK,
    "SPREAD": types.BundleStrategy.SPREAD,
    "STRICT_PACK": types.BundleStrategy.STRICT_PACK,
    "STRICT_SPREAD": types.BundleStrategy.STRICT_SPREAD,
}
_NAMES = {v: k for k, v in _STRATEGIES.items()}
_STATES = {
    types.GroupState.PENDING: "PENDING",
    types.GroupState.CREATED: "CREATED",
    types.GroupState.RESCHEDULING: "RESCHEDULING",
    types.GroupState.REMOVED: "REMOVED",
}


def _bundle(spec):
    """A bundle as Ray writes it (`{"CPU": 1, "GPU": 1, "memory": bytes,
    "custom": n}`) as the host's resources."""
    if not isinstance(spec, dict) or not spec:
        raise errors.InvalidArgumentError(f"a bundle is a non-empty dict of resources, not {spec!r}")
    rest = {}
    for k, v in spec.items():
        if (
            not isinstance(k, str)
            or not isinstance(v, (int, float))
            or isinstance(v, bool)
            or not math.isfinite(v)
            or v < 0
        ):
            raise errors.InvalidArgumentError(f"bundle resource {k!r}: {v!r} is not an amount")
        if k not in ("CPU", "GPU", "memory"):
            rest[k] = float(v)
    return types.Resources(
        num_cpus=float(spec["CPU"]) if "CPU" in spec else None,
        num_gpus=float(spec["GPU"]) if "GPU" in spec else None,
        memory=int(spec["memory"]) if "memory" in spec else None,
        custom=sorted(rest.items()),
    )


def resource_dict(r):
    """The host's resources as Ray's dict (`{"CPU": 2.0, "GPU": 1.0,
    "memory": bytes, custom: amount}`), amounts that are 0 left out."""
    out = {}
    if r.num_cpus:
        out["CPU"] = r.num_cpus
    if r.num_gpus:
        out["GPU"] = r.num_gpus
    if r.memory:
        out["memory"] = r.memory
    out.update(dict(r.custom))
    return out


class PlacementGroup:
    """A placement group: its bundles are reserved together."""

    __slots__ = ("_id", "bundle_specs")

    def __init__(self, group_id, bundle_specs):
        self._id = group_id
        self.bundle_specs = bundle_specs

    @property
    def id(self):
        """The group's id, in hex."""
        return id_bytes(self._id).hex()

    @property
    def bundle_count(self):
        return len(self.bundle_specs)

    def ready(self):
        """An `ObjectRef` that resolves once every bundle is reserved (a new
        one each call); it fails when the group is removed."""
        try:
            return ObjectRef(host.placement_group_ready(self._id))
        except Err as e:
            raise_error(e.value)

    def wait(self, timeout_seconds=30):
        """Whether every bundle was reserved within `timeout_seconds`; a
        removed group raises its error."""
        ref = self.ready()
        try:
            ready = host.wait([ref._handle], 1, max(0, int(timeout_seconds * 1000)))
            if ready:
                host.get(ref._handle, None)  # ready may mean failed: say how
        except Err as e:
            raise_error(e.value)
        return bool(ready)

    def __eq__(self, other):
        return isinstance(other, PlacementGroup) and self.id == other.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"PlacementGroup({self.id})"


def placement_group(bundles, strategy="PACK", name=None, namespace=None, lifetime=None):
    """Creates a placement group of `bundles` (dicts of resources) spread by
    `strategy` ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"),
    registered under `name` when given, kept past the job with
    `lifetime="detached"`. Its bundles are reserved as soon as there is
    room (`ready()`); fails at once when the cluster could never hold it."""
    if strategy not in _STRATEGIES:
        raise errors.InvalidArgumentError(
            f"strategy must be one of {', '.join(_STRATEGIES)}, not {strategy!r}"
        )
    if lifetime not in (None, "detached"):
        raise errors.InvalidArgumentError(f"lifetime must be 'detached' or None, not {lifetime!r}")
    wit_bundles = [_bundle(b) for b in bundles]
    options = types.PlacementGroupOptions(
        bundles=wit_bundles,
        strategy=_STRATEGIES[strategy],
        name=name or None,
        namespace=namespace,
        detached=lifetime == "detached",
    )
    try:
        group = host.create_placement_group(options)
    except Err as e:
        raise_error(e.value)
    return PlacementGroup(group, [resource_dict(b) for b in wit_bundles])


def remove_placement_group(group):
    """Removes `group`: frees its bundles, fails the work queued in it and
    stops its actors."""
    try:
        host.remove_placement_group(group._id)
    except Err as e:
        raise_error(e.value)


def get_placement_group(name, namespace=None):
    """The group registered under `name` (in the job's namespace, or
    `namespace`)."""
    try:
        info = host.get_placement_group(name, namespace)
    except Err as e:
        raise_error(e.value)
    return PlacementGroup(info.id, [resource_dict(b) for b in info.bundles])


def placement_group_table(group):
    """What `group` is and where its bundles are now, as Ray's dict."""
    try:
        info = host.placement_group_table(group._id)
    except Err as e:
        raise_error(e.value)
    return {
        "placement_group_id": id_bytes(info.id).hex(),
        "name": info.name or "",
        "strategy": _NAMES[info.strategy],
        "bundles": {i: resource_dict(b) for i, b in enumerate(info.bundles)},
        "bundles_to_node_id": {i: n for i, n in enumerate(info.bundle_nodes) if n is not None},
        "state": _STATES[info.state],
    }


class PlacementGroupSchedulingStrategy:
    """Run a task or actor in bundle `placement_group_bundle_index` of
    `placement_group` (any of its bundles when -1), out of what the bundle
    reserved (Ray's strategy of the same name)."""

    def __init__(self, placement_group, placement_group_bundle_index=-1,
                 placement_group_capture_child_tasks=None):
        if not isinstance(placement_group, PlacementGroup):
            raise errors.InvalidArgumentError("placement_group must be a PlacementGroup")
        if placement_group_capture_child_tasks:
            raise errors.InvalidArgumentError(
                "placement_group_capture_child_tasks is not supported: pass the strategy to each call"
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index

    def _wit(self):
        index = self.placement_group_bundle_index
        if index is not None and (type(index) is not int or index < -1):
            raise errors.InvalidArgumentError(f"a bundle index is a count or -1 (any), not {index!r}")
        return types.Placement_Bundle(
            types.BundleTarget(
                group=self.placement_group._id,
                index=None if index is None or index == -1 else int(index),
            )
        )
