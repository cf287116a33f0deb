"""The API key permissions of docs/dam-api.md §1.3 and which one each emulated route needs, so a
key that lacks some (`Options.denied_permissions`) can be emulated."""

from __future__ import annotations

from collections.abc import Collection

from syncd.emulator.model import EmulatorError

__all__ = ["PERMISSIONS", "ROUTE_PERMISSIONS", "denied"]

# The current list of permission names (docs/dam-api.md §1.3).
PERMISSIONS: tuple[str, ...] = (
    "OBJECTS_LIST",
    "OBJECTS_FETCH",
    "FILE_UPLOAD",
    "FILE_META_CREATE",
    "FILE_META_CHANGE",
    "FILE_RENAME",
    "FILE_MOVE",
    "FILE_DELETE",
    "FILE_SET_VISIBILITY",
    "FILE_LABEL_CHANGE",
    "FILE_IMAGE_EDITOR",
    "DIR_CREATE",
    "DIR_RENAME",
    "DIR_META_CHANGE",
    "DIR_MOVE",
    "DIR_DELETE",
    "DIR_SET_VISIBILITY",
    "CONFIG_CHANGE",
    "CONFIG_LIST",
    "FILE_PRODUCT_CHANGE",
    "FILE_PROCESS_AUTOTAGGING",
    "COLLECTIONS_LIST",
    "COLLECTIONS_MANAGE",
    "LABELS_LIST",
    "LABEL_MANAGE",
    "OBJECTS_SHARE_MANAGE",
    "OBJECTS_AIRBOX_MANAGE",
    "OBJECTS_APPROVAL_MANAGE",
    "OBJECTS_APPROVAL_VOTE",
    "ACCESS_READ",
    "ACCESS_MANAGE",
)

# (method, route below /{token}/v4) -> the permission it needs. Downloads are left out:
# docs/dam-api.md names no permission for the permalink.
ROUTE_PERMISSIONS: dict[tuple[str, str], str] = {
    ("GET", "/files"): "OBJECTS_LIST",
    ("GET", "/files/{uuid}"): "OBJECTS_FETCH",
    ("GET", "/folders"): "OBJECTS_FETCH",
    ("GET", "/folders/{uuid}"): "OBJECTS_FETCH",
    ("POST", "/files"): "FILE_UPLOAD",
    ("PUT", "/files"): "FILE_UPLOAD",
    ("PATCH", "/files/{uuid}"): "FILE_RENAME",
    ("PUT", "/files/{uuid}/folders/{folder_uuid}"): "FILE_MOVE",
    ("POST", "/files/move"): "FILE_MOVE",
    ("DELETE", "/files"): "FILE_DELETE",
    ("DELETE", "/files/{uuid}"): "FILE_DELETE",
    ("POST", "/folders"): "DIR_CREATE",
    ("DELETE", "/folders"): "DIR_DELETE",
    ("DELETE", "/folders/{uuid}"): "DIR_DELETE",
}


def denied(denied_permissions: Collection[str], method: str, route: str) -> EmulatorError | None:
    """Return the 403 for a request the key may not make, or None.

    Args:
        denied_permissions: the permissions the key lacks.
        method: the request's HTTP method.
        route: the route pattern below `/{token}/v4`, such as `/files/{uuid}`.
    """
    if not denied_permissions:
        return None
    needed = ROUTE_PERMISSIONS.get((method, route))
    if needed is None or needed not in denied_permissions:
        return None
    return EmulatorError(
        403,
        "PERMISSION_DENIED",
        f"the API key lacks the {needed} permission",
        f"grant {needed} to the key or its security template",
        permission=needed,
    )
