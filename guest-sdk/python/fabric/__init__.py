"""wasmfabric's Python SDK: Ray's programming model, run as sandboxed
WebAssembly components.

    import fabric

    @fabric.remote
    def add(x, y):
        return x + y

    @fabric.main
    def main():
        print(fabric.get(add.remote(1, 2)))

Build and run it with `fabric run app.py` (componentize-py compiles it into
a component). Values travel as MessagePack, the same bytes the Rust SDK
writes, so a Python task can read a Rust task's objects and the other way.
"""

from ._api import (
    ActorClass,
    ActorHandle,
    NodeAffinity,
    ObjectRefGenerator,
    RemoteFunction,
    RuntimeContext,
    actor_class,
    available_resources,
    cancel,
    cluster_resources,
    context,
    function,
    get,
    get_actor,
    get_deployment_handle,
    kill,
    load_checkpoint,
    main,
    put,
    remote,
    save_checkpoint,
    wait,
)
from ._groups import (
    PlacementGroup,
    PlacementGroupSchedulingStrategy,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from ._values import ObjectRef
from . import util  # noqa: F401  (a component holds what was imported when it was built)
from .errors import (
    ActorDiedError,
    FabricError,
    GetTimeoutError,
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    ObjectLostError,
    ResourcesInfeasibleError,
    TaskCancelledError,
    TaskFailedError,
    ValueEncodingError,
)

__all__ = [
    "ActorClass", "ActorHandle", "NodeAffinity", "ObjectRef", "ObjectRefGenerator", "RemoteFunction",
    "RuntimeContext",
    "actor_class", "available_resources", "cancel", "function", "cluster_resources", "context", "get", "get_actor", "get_deployment_handle", "kill",
    "load_checkpoint", "main", "put", "remote", "save_checkpoint", "wait",
    "PlacementGroup", "PlacementGroupSchedulingStrategy", "get_placement_group", "placement_group",
    "placement_group_table", "remove_placement_group",
    "ActorDiedError", "FabricError", "GetTimeoutError", "InvalidArgumentError", "LimitExceededError",
    "NotFoundError", "ObjectLostError", "ResourcesInfeasibleError", "TaskCancelledError",
    "TaskFailedError", "ValueEncodingError",
]
