# -*- test-case-name: tests.test_e2e_api -*-
"""The management API's read endpoints over stored user data, as Open OSCAR
Server serves them (docs/management-api-notes.md): a user's buddy list by
group, its buddy icon, and BART items by hash or type.

Stored data only: the buddy list is the one the user's clients last
committed (what every session of it sees), read from the store, so the
answer is the same whether the user is signed on or not.

Uploaded bytes are served as data, never as a page: with
``X-Content-Type-Options: nosniff`` and a sandboxing Content-Security-Policy,
an "icon" that is really HTML cannot run in the API's origin (where the
status page keeps the token).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from aimserver.api.http import ApiRequest, ApiResponse, Route, bad_request, not_found, route
from aimserver.services.bart import icon_of
from aimserver.services.feedbag_order import (
    CLASS_BUDDY,
    CLASS_GROUP,
    consistent_orders,
    order_of,
)
from aimserver.store.interfaces import FeedbagItem, IUserStore
from aimserver.wire.bart import CLEAR_ICON_HASH
from aimserver.wire.errors import MalformedData
from aimserver.wire.tlv import TlvList

#: The most hashes one GET /bart answers (newest first; the store's bound on
#: one listing): the answer stays small however many icons are stored.
MAX_LISTED_BART_ITEMS = 1000
#: For bytes users uploaded.
DATA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}
#: Leading bytes of the image formats AIM clients upload as icons.
IMAGE_SIGNATURES = (
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"BM", "image/bmp"),
)


def image_type(data: bytes) -> str:
    """The content type the bytes' signature says, as the Go server sniffs it."""
    for signature, kind in IMAGE_SIGNATURES:
        if data.startswith(signature):
            return kind
    return "application/octet-stream"


def groups_in_display_order(items: tuple[FeedbagItem, ...]) -> list[dict[str, Any]]:
    """The Go server's groups (the root left out), each with its buddies, in
    the order the user's clients show them: the order TLVs, made consistent
    with the items as a client is given them (``consistent_orders``)."""
    items = tuple(consistent_orders(items))
    groups = {i.group_id: i for i in items if i.class_id == CLASS_GROUP}
    buddies: dict[int, dict[int, FeedbagItem]] = {}
    for item in items:
        if item.class_id == CLASS_BUDDY and item.group_id in groups:
            buddies.setdefault(item.group_id, {})[item.item_id] = item
    root = groups.get(0)
    shown = _ordered(root, sorted(g for g in groups if g != 0))
    answer = []
    for group_id in shown:
        group = groups.get(group_id)
        if group is None:
            continue
        members = buddies.get(group_id, {})
        answer.append(
            {
                "group_id": group_id,
                "group_name": group.name,
                "buddies": [
                    {"name": members[item_id].name, "item_id": item_id}
                    for item_id in _ordered(group, sorted(members))
                    if item_id in members
                ],
            }
        )
    return answer


def _ordered(container: FeedbagItem | None, ids: list[int]) -> list[int]:
    """``ids`` in the container's order TLV (the repaired one names each once)."""
    if container is None:
        return ids
    try:
        listed = order_of(TlvList.unpack_list(container.attributes, "order"))
    except MalformedData:
        return ids
    seen = set(listed)
    return listed + [i for i in ids if i not in seen]


class UserDataApi:
    def __init__(self, store: IUserStore) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [
            route("GET", "/feedbag/{screen_name}/group", self.feedbag_groups),
            route("GET", "/user/{screenname}/icon", self.user_icon),
            route("GET", "/bart", self.bart_items),
            route("GET", "/bart/{hash}", self.bart_item),
        ]

    def feedbag_groups(self, request: ApiRequest) -> Deferred[ApiResponse]:
        def answer(feedbag: Any) -> ApiResponse:
            if not feedbag.items:
                raise not_found("feedbag not found")
            return ApiResponse(200, groups_in_display_order(feedbag.items))

        return self.store.get_feedbag(request.params["screen_name"]).addCallback(answer)

    def user_icon(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """The icon the user's buddy list names (what others see), sniffed
        for its content type."""
        name = request.params["screenname"]

        async def icon() -> ApiResponse:
            if await self.store.get_account(name) is None:
                raise not_found("user not found")
            named = icon_of((await self.store.get_feedbag(name)).items)
            if named is None or named.hash == CLEAR_ICON_HASH:
                raise not_found("icon not found")
            data = await self.store.get_bart_item(named.hash)
            if data is None:
                raise not_found("icon not found")
            return ApiResponse(200, data, image_type(data), DATA_HEADERS)

        return ensureDeferred(icon())

    def bart_item(self, request: ApiRequest) -> Deferred[ApiResponse]:
        try:
            digest = bytes.fromhex(request.params["hash"])
        except ValueError:
            raise bad_request("invalid hash format") from None
        if not digest:
            raise bad_request("invalid hash format")

        def answer(data: bytes | None) -> ApiResponse:
            if data is None:
                raise not_found("BART asset not found")
            return ApiResponse(200, data, "application/octet-stream", DATA_HEADERS)

        return self.store.get_bart_item(digest).addCallback(answer)

    def bart_items(self, request: ApiRequest) -> Deferred[ApiResponse]:
        """Stored items of one BART type, newest first, at most
        ``MAX_LISTED_BART_ITEMS``."""
        given = request.query.get("type")
        if not given or not given[0]:
            raise bad_request("type query parameter is required")
        try:
            bart_type = int(given[0])
        except ValueError:
            raise bad_request("invalid type ID") from None
        if not 0 <= bart_type <= 0xFFFF or not given[0].isdigit():
            raise bad_request("invalid type ID")

        def answer(hashes: list[bytes]) -> ApiResponse:
            return ApiResponse(200, [{"hash": h.hex(), "type": bart_type} for h in hashes])

        d = self.store.list_bart_items_by_type(bart_type, MAX_LISTED_BART_ITEMS)
        return d.addCallback(answer)
