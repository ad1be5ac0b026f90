"""The management API's OpenAPI document (aimserver/api/openapi.json) says
what the server does: the same routes, and over real HTTP every answer's
status is one the document lists for that operation, with a body its schema
accepts; every request the server accepts fits the documented request
schema; and GET /openapi.json serves the file.

The schemas are checked by the small validator below (the subset of OpenAPI
3.0 schemas the document uses; any other keyword fails the test rather than
being silently ignored)."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from aimserver.api.http import MAX_BODY, route
from aimserver.config import Config
from aimserver.server import AimServer
from aimserver.store.memory import MemoryUserStore
from aimserver.wire.bart import Upload, UploadReply
from aimserver.wire.feedbag import WireFeedbagItem
from aimserver.wire.flap import Channel
from aimserver.wire.tlv import Tlv
from tests.client import deferred_test
from tests.harness import SECRET, wait_until
from tests.test_e2e_api import TOKEN, ApiTestCase
from tests.test_e2e_bart import ICON, ICON_ITEM, MD5, bart_connection
from tests.test_e2e_feedbag import BOB

DOCUMENT_TEXT = (
    importlib.resources.files("aimserver.api").joinpath("openapi.json").read_text("utf-8")
)
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_TEXT)
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
#: Statuses every operation lists (the router's, not the handler's): 401
#: with a token, 413 for an oversize body, 500 for a bug.
ROUTER_STATUSES = {"401", "413", "500"}
OVERSIZE = b"x" * (MAX_BODY + 1)


# -- the document ----------------------------------------------------------------------


def is_public(op: dict[str, Any]) -> bool:
    """Answered without the token: the operation's security is only ``{}``."""
    return op.get("security") == [{}]


def router_statuses(op: dict[str, Any]) -> set[str]:
    """What the router itself may answer for any operation (no 401 for a public one)."""
    return ROUTER_STATUSES - {"401"} if is_public(op) else ROUTER_STATUSES


def operations(document: dict[str, Any] = DOCUMENT) -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path template) -> operation object."""
    return {
        (method.upper(), path): item[method]
        for path, item in document["paths"].items()
        for method in HTTP_METHODS
        if method in item
    }


def resolve(node: dict[str, Any], document: dict[str, Any] = DOCUMENT) -> dict[str, Any]:
    """``node`` with its ``$ref`` (a local ``#/...`` pointer) followed."""
    seen = set()
    while "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/") or ref in seen:
            raise AssertionError(f"unsupported or circular $ref {ref!r}")
        seen.add(ref)
        target: Any = document
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def parameters(path: str, document: dict[str, Any] = DOCUMENT) -> list[dict[str, Any]]:
    """The path item's and each of its operations' parameters."""
    item = document["paths"][path]
    found = [resolve(p, document) for p in item.get("parameters", [])]
    for method in HTTP_METHODS:
        found += [resolve(p, document) for p in item.get(method, {}).get("parameters", [])]
    return found


def template_names(template: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", template)


def sample_path(template: str, document: dict[str, Any] = DOCUMENT) -> str:
    """The template with a value of each parameter's type in place."""
    kinds = {p["name"]: p["schema"]["type"] for p in parameters(template, document)}
    return re.sub(r"\{(\w+)\}", lambda m: "1" if kinds[m[1]] == "integer" else "sample", template)


# -- a validator for the document's schemas ----------------------------------------------

TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
FORMATS: dict[str, Any] = {
    "date-time": lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).tzinfo is not None,
}
#: Every keyword the validator knows; "description" and "example" say nothing
#: it checks.
KEYWORDS = {
    "$ref",
    "type",
    "nullable",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "description",
    "example",
}


def validate(schema: dict[str, Any], value: Any, where: str = "$") -> list[str]:
    """Why ``value`` does not fit ``schema`` (none: it does)."""
    unknown = set(schema) - KEYWORDS
    if unknown:
        return [f"{where}: the validator does not know {sorted(unknown)}"]
    if "$ref" in schema:
        if len(schema) > 1:
            return [f"{where}: $ref with siblings (OpenAPI 3.0 ignores them)"]
        return validate(resolve(schema), value, where)
    if value is None:
        return [] if schema.get("nullable") else [f"{where}: null is not allowed"]
    if schema.get("format") == "binary":
        return [] if isinstance(value, bytes) else [f"{where}: {value!r:.60} is not bytes"]
    kind = schema.get("type")
    if kind is not None and not TYPES[kind](value):
        return [f"{where}: {value!r:.60} is not {kind}"]
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r:.60} is not one of {schema['enum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: shorter than {schema['minLength']}")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']}")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            errors.append(f"{where}: {value!r:.60} does not match {schema['pattern']}")
        if "format" in schema:
            try:
                fits = FORMATS[schema["format"]](value)
            except ValueError:
                fits = False
            if not fits:
                errors.append(f"{where}: {value!r:.60} is not a {schema['format']}")
    if TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: {value} is below {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: {value} is above {schema['maximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{where}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            errors += validate(schema.get("items", {}), item, f"{where}[{i}]")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: {name} is missing")
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                errors += validate(properties[name], item, f"{where}.{name}")
            elif extra is False:
                errors.append(f"{where}: {name} is not allowed")
            elif isinstance(extra, dict):
                errors += validate(extra, item, f"{where}.{name}")
    return errors


def schemas_in(node: Any, where: str = "#") -> list[tuple[str, dict[str, Any]]]:
    """Every schema object in the document: under ``schema``, a component
    schema, and the schemas nested in those."""
    found: list[tuple[str, dict[str, Any]]] = []

    def schema(s: dict[str, Any], at: str) -> None:
        found.append((at, s))
        for name, sub in s.get("properties", {}).items():
            schema(sub, f"{at}/properties/{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(s.get(key), dict):
                schema(s[key], f"{at}/{key}")

    def walk(n: Any, at: str) -> None:
        if isinstance(n, dict):
            for key, value in n.items():
                if key == "schema":
                    schema(value, f"{at}/schema")
                elif at == "#/components" and key == "schemas":
                    for name, s in value.items():
                        schema(s, f"{at}/schemas/{name}")
                else:
                    walk(value, f"{at}/{key}")
        elif isinstance(n, list):
            for i, value in enumerate(n):
                walk(value, f"{at}/{i}")

    walk(node, where)
    return found


class ValidatorTests(unittest.TestCase):
    """The validator itself refuses what it should."""

    def test_refusals(self) -> None:
        user = {"$ref": "#/components/schemas/User"}
        good = {
            "id": "bob",
            "screen_name": "Bob",
            "is_icq": False,
            "suspended_status": "",
            "is_bot": False,
        }
        self.assertEqual(validate(user, good), [])
        self.assertEqual(validate({"type": "array", "items": user}, [good, good]), [])
        bad = [
            {**good, "extra": 1},
            {k: v for k, v in good.items() if k != "id"},
            {**good, "is_bot": 0},
            {**good, "suspended_status": "maybe"},
            {**good, "id": None},
            [good],
            None,
        ]
        for value in bad:
            self.assertNotEqual(validate(user, value), [], value)
        self.assertNotEqual(validate({"type": "integer"}, True), [])
        self.assertNotEqual(validate({"type": "number"}, "1"), [])
        self.assertEqual(validate({"type": "number", "nullable": True}, None), [])
        self.assertEqual(validate({"type": "number"}, 30.0), [])
        self.assertNotEqual(validate({"type": "string", "format": "date-time"}, "yesterday"), [])
        self.assertNotEqual(validate({"type": "string", "minLength": 1}, ""), [])
        self.assertNotEqual(validate({"type": "array", "maxItems": 1}, [1, 2]), [])
        self.assertNotEqual(validate({"type": "string", "oneOf": []}, ""), [])
        self.assertNotEqual(
            validate({"type": "object", "additionalProperties": {"type": "integer"}}, {"a": "b"}),
            [],
        )


# -- the document alone ------------------------------------------------------------------


class DocumentTests(unittest.TestCase):
    def test_well_formed(self) -> None:
        """OpenAPI 3.0.3, two-space indented; every $ref resolves; every
        schema uses only keywords the validator checks; every path
        parameter is declared once, required, with a type; every operation
        has an id, JSON request bodies, only real statuses, no body on
        204/304, and the shared Error schema on every error."""
        self.assertEqual(DOCUMENT["openapi"], "3.0.3")
        self.assertEqual(DOCUMENT_TEXT, json.dumps(DOCUMENT, indent=2, ensure_ascii=False) + "\n")
        for at, schema in schemas_in(DOCUMENT):
            self.assertEqual(set(schema) - KEYWORDS, set(), at)
            if "$ref" in schema:
                resolve(schema)
            elif schema.get("type") == "object" and "properties" in schema:
                self.assertLessEqual(set(schema.get("required", [])), set(schema["properties"]))
        ids = [op["operationId"] for op in operations().values()]
        self.assertEqual(len(ids), len(set(ids)))
        error = {"$ref": "#/components/schemas/Error"}
        for (method, path), op in operations().items():
            where = f"{method} {path}"
            params = [p for p in parameters(path) if p["in"] == "path"]
            self.assertEqual(sorted(p["name"] for p in params), sorted(template_names(path)))
            for p in params:
                self.assertTrue(p["required"], where)
                self.assertIn(p["schema"]["type"], ("string", "integer"), where)
            if "requestBody" in op:
                self.assertEqual(set(op["requestBody"]["content"]), {"application/json"}, where)
            self.assertLessEqual(router_statuses(op), set(op["responses"]), where)
            for status, response in op["responses"].items():
                response = resolve(response)
                self.assertRegex(status, r"^[1-5][0-9][0-9]$", where)
                self.assertIn("description", response, where)
                if status in ("204", "304"):
                    self.assertNotIn("content", response, (where, status))
                elif int(status) >= 400:
                    self.assertEqual(
                        response["content"], {"application/json": {"schema": error}}, where
                    )
                elif not all(
                    media["schema"].get("format") == "binary"
                    for media in response["content"].values()
                ):
                    # One JSON or text type; only raw bytes may come as several
                    # (an icon is a GIF, a JPEG, ...).
                    self.assertEqual(len(response["content"]), 1, (where, status))
        schemes = DOCUMENT["components"]["securitySchemes"]
        self.assertEqual(schemes["bearerAuth"], {**schemes["bearerAuth"], "type": "http"})
        self.assertEqual(schemes["bearerAuth"]["scheme"], "bearer")
        # The token is optional: {} (no security) is one of the alternatives.
        self.assertEqual(DOCUMENT["security"], [{}, {"bearerAuth": []}])


class RouteTests(unittest.TestCase):
    def test_the_server_routes_are_the_document_paths(self) -> None:
        """Every route the API site serves (ManagementApi.routes() and any the
        server adds) is a documented (method, path), with the same regex the
        template compiles to, and the route a sample path of each template
        reaches is that one; and every documented operation is served."""
        server = AimServer(Config(), MemoryUserStore(), SECRET, reactor)
        served = list(server.api_site.resource.routes)
        own = {(r.method, r.pattern.pattern) for r in server.api.routes()}
        self.assertLessEqual(own, {(r.method, r.pattern.pattern) for r in served})
        documented = {}
        for method, template in operations():
            pattern = route(method, template, lambda request: None).pattern.pattern
            self.assertNotIn((method, pattern), documented, template)
            documented[method, pattern] = template
        served_keys = [(r.method, r.pattern.pattern) for r in served]
        self.assertEqual(len(served_keys), len(set(served_keys)), "a route is served twice")
        undocumented = sorted(set(served_keys) - set(documented))
        self.assertEqual(undocumented, [], "served but not in openapi.json")
        unserved = sorted(documented[k] for k in set(documented) - set(served_keys))
        self.assertEqual(unserved, [], "in openapi.json but not served")
        for (method, pattern), template in documented.items():
            path = sample_path(template)
            first = next(r for r in served if r.method == method and r.pattern.match(path))
            self.assertEqual(first.pattern.pattern, pattern, f"{method} {path} is shadowed")
            match = first.pattern.match(path)
            assert match is not None
            self.assertEqual(sorted(match.groupdict()), sorted(template_names(template)))


# -- end to end --------------------------------------------------------------------------


class OpenApiTestCase(ApiTestCase):
    """``api()`` makes one request to a documented operation and checks the
    answer against the document."""

    def setUp(self) -> None:
        super().setUp()
        #: (METHOD, template) -> statuses answered.
        self.seen: dict[tuple[str, str], set[str]] = {}

    async def api(
        self,
        method: str,
        template: str,
        body: Any = None,
        *,
        params: dict[str, str | int] | None = None,
        raw: bytes | None = None,
        token: str | None = None,
        expect: int | None = None,
        conforms: bool | None = None,
        query: str = "",
    ) -> Any:
        """The answer's body, once its status (``expect`` if given) is one
        documented for the operation and its content type and body fit the
        documented response. ``conforms``: whether the JSON request body
        fits the documented request schema; any body the server accepts
        must."""
        op = operations()[method, template]
        where = f"{method} {template} {body if raw is None else raw[:40]!r}"
        params = params or {}
        self.assertEqual(sorted(params), sorted(template_names(template)), where)
        path = re.sub(r"\{(\w+)\}", lambda m: quote(str(params[m[1]]), safe=""), template)
        request_errors = None
        if body is not None and raw is None:
            request_errors = validate(
                op["requestBody"]["content"]["application/json"]["schema"], body
            )
            if conforms is not None:
                self.assertEqual(request_errors == [], conforms, (where, request_errors))
        if query:
            path += "?" + query
        status, answer, kind = await self.call(method, path, body, raw=raw, token=token)
        if expect is not None:
            self.assertEqual(status, expect, (where, answer))
        responses = op["responses"]
        self.assertIn(str(status), responses, (where, f"{status} is not documented", answer))
        self.seen.setdefault((method, template), set()).add(str(status))
        if status < 400 and request_errors:
            self.fail(f"{where}: accepted, but the document refuses it: {request_errors}")
        if status == 404 and isinstance(answer, dict):
            self.assertFalse(str(answer.get("error")).startswith("no such endpoint"), where)
        self.check_content(resolve(responses[str(status)]), status, answer, kind, where)
        return answer

    def check_content(
        self, response: dict[str, Any], status: int, answer: Any, kind: str, where: str
    ) -> None:
        content = response.get("content")
        if content is None:
            self.assertEqual(answer, "", (where, status))
            return
        media = kind.split(";")[0].strip()
        self.assertIn(media, content, (where, status, kind))
        errors = validate(content[media]["schema"], answer)
        self.assertEqual(errors, [], (where, status, answer))

    def assertAllStatusesSeen(self, *ops: tuple[str, str]) -> None:
        """Every status documented for these operations (but the router's)
        was answered: the document lists nothing the handler cannot do."""
        for key in ops:
            documented = set(operations()[key]["responses"]) - router_statuses(operations()[key])
            self.assertEqual(documented - self.seen.get(key, set()), set(), key)


class UserEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_users_and_accounts(self) -> None:
        server = await self.start()
        await self.api("GET", "/user", expect=200)
        created = {"screen_name": "Carol", "password": "pass12"}
        await self.api("POST", "/user", created, expect=201, conforms=True)
        await self.api("POST", "/user", {**created, "admin": True}, expect=400, conforms=False)
        await self.api("POST", "/user", {"screen_name": "Dave"}, expect=400, conforms=False)
        await self.api("POST", "/user", {**created, "password": 5}, expect=400, conforms=False)
        await self.api("POST", "/user", raw=b"{not json", expect=400)
        await self.api("POST", "/user", {**created, "password": "p"}, expect=400, conforms=True)
        await self.api("POST", "/user", {**created, "screen_name": "carol"}, expect=409)
        users = await self.api("GET", "/user", expect=200)
        self.assertEqual(sorted(u["id"] for u in users), ["alice", "bob", "carol"])

        await self.api(
            "PUT", "/user/password", {"screen_name": "Carol", "password": "newpass1"}, expect=204
        )
        await self.api(
            "PUT", "/user/password", {"screen_name": "Nobody", "password": "pass12"}, expect=404
        )
        await self.api("PUT", "/user/password", {"screen_name": "Carol"}, expect=400)
        await self.api(
            "PUT", "/user/password", {"screen_name": "Carol", "password": "p"}, expect=400
        )

        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        alice.set_profile(b"<b>hello</b>")
        await alice.sync()
        account = "/user/{screenname}/account"
        found = await self.api("GET", account, params={"screenname": "A LICE"}, expect=200)
        self.assertEqual((found["id"], found["profile"]), ("alice", "<b>hello</b>"))
        await self.api("GET", account, params={"screenname": "nobody"}, expect=404)
        bob = {"screenname": "bob"}
        await self.api("PATCH", account, {}, params=bob, expect=304, conforms=True)
        await self.api("PATCH", account, {"is_bot": True}, params=bob, expect=204)
        await self.api("PATCH", account, {"is_bot": True}, params=bob, expect=304)
        suspend = {"suspended_status": "suspended_age"}
        await self.api("PATCH", account, suspend, params=bob, expect=204, conforms=True)
        found = await self.api("GET", account, params=bob, expect=200)
        self.assertEqual((found["suspended_status"], found["is_bot"]), ("suspended", True))
        for bad in ({"suspended_status": "maybe"}, {"is_bot": "yes"}, {"admin": True}):
            await self.api("PATCH", account, bad, params=bob, expect=400, conforms=False)
        await self.api("PATCH", account, {}, params={"screenname": "nobody"}, expect=404)
        await self.api("PATCH", account, {"suspended_status": ""}, params=bob, expect=204)

        await self.api("DELETE", "/user", {"screen_name": "Carol"}, expect=204)
        await self.api("DELETE", "/user", {"screen_name": "Carol"}, expect=404)
        await self.api("DELETE", "/user", {}, expect=400, conforms=False)
        self.assertAllStatusesSeen(
            ("GET", "/user"),
            ("POST", "/user"),
            ("DELETE", "/user"),
            ("PUT", "/user/password"),
            ("GET", account),
            ("PATCH", account),
        )


class SessionEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_sessions_and_instances(self) -> None:
        server = await self.start()
        listing = await self.api("GET", "/session", expect=200)
        self.assertEqual(listing, {"count": 0, "sessions": []})
        first = await server.session("Alice")
        second = await server.session("Alice")
        self.addCleanup(second.close)
        first.set_capabilities([bytes(range(16))])
        second.set_away(b"gone")
        second.set_idle(60)
        await first.sync()
        await second.sync()
        listing = await self.api("GET", "/session", expect=200)
        (session,) = listing["sessions"]
        self.assertEqual(session["instance_count"], 2)
        self.assertIn(bytes(range(16)).hex(), session["instances"][0]["capabilities"])
        one = "/session/{screenname}"
        await self.api("GET", one, params={"screenname": "A LICE"}, expect=200)
        await self.api("GET", one, params={"screenname": "bob"}, expect=404)

        instance = "/session/{screenname}/{instance}"
        await self.api("DELETE", instance, params={"screenname": "bob", "instance": 1}, expect=404)
        alice = {"screenname": "alice"}
        await self.api("DELETE", instance, params={**alice, "instance": "x"}, expect=400)
        await self.api("DELETE", instance, params={**alice, "instance": 9999}, expect=404)
        number = session["instances"][0]["num"]
        await self.api("DELETE", instance, params={**alice, "instance": number}, expect=204)
        await first.flap.wait_channel(Channel.SIGNOFF)
        await second.sync()

        await self.api("DELETE", one, params=alice, expect=204)
        await second.flap.wait_channel(Channel.SIGNOFF)
        await wait_until(lambda: server.server.registry.get("alice") is None, "Alice signed off")
        await self.api("DELETE", one, params=alice, expect=404)
        self.assertAllStatusesSeen(("GET", "/session"), ("GET", one), ("DELETE", one))
        self.assertAllStatusesSeen(("DELETE", instance))


class ChatEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_public_and_private_rooms(self) -> None:
        server = await self.start()
        public = "/chat/room/public"
        await self.api("GET", public, expect=200)
        await self.api("POST", public, {"name": "Town Square"}, expect=201, conforms=True)
        await self.api("POST", public, {"name": "town square"}, expect=409)
        await self.api("POST", public, {"name": "100%"}, expect=400, conforms=True)
        await self.api("POST", public, {"name": 5}, expect=400, conforms=False)
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        in_public = await alice.join_room("Town Square", 5)
        self.addCleanup(in_public.close)
        in_private = await alice.join_room("Back Room")
        self.addCleanup(in_private.close)
        (room,) = await self.api("GET", public, expect=200)
        self.assertEqual(room["participants"], [{"id": "alice", "screen_name": "Alice"}])
        (room,) = await self.api("GET", "/chat/room/private", expect=200)
        self.assertEqual(room["name"], "Back Room")
        await self.api("DELETE", public, {"names": []}, expect=400, conforms=False)
        await self.api("DELETE", public, {"names": ["a", 1]}, expect=400, conforms=False)
        await self.api("DELETE", public, {"names": ["a"] * 1001}, expect=400, conforms=False)
        await self.api("DELETE", public, {"names": ["Town Square", "Nowhere"]}, expect=204)
        self.assertEqual(await self.api("GET", public, expect=200), [])
        self.assertAllStatusesSeen(
            ("GET", public), ("POST", public), ("DELETE", public), ("GET", "/chat/room/private")
        )


class MessageEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_instant_messages_and_broadcasts(self) -> None:
        server = await self.start()
        alice = await server.session("Alice")
        bob = await server.session("Bob")
        for client in (alice, bob):
            self.addCleanup(client.close)
        im = {"from": "Admin", "to": "alice", "text": "hello"}
        await self.api("POST", "/instant-message", im, expect=200, conforms=True)
        self.assertEqual((await alice.receive_im())[1], b"hello")
        await self.api("POST", "/instant-message", {**im, "to": "nobody"}, expect=200)
        await self.api("POST", "/instant-message", {**im, "from": ""}, expect=400, conforms=False)
        await self.api("POST", "/instant-message", {**im, "from": "Ädmin"}, expect=400)
        await self.api("POST", "/instant-message", {**im, "text": None}, expect=400)
        await self.api("POST", "/instant-message", {**im, "text": "é" * 4001}, expect=400)

        result = await self.api("POST", "/broadcast", {"text": "noon"}, expect=200, conforms=True)
        self.assertEqual(result, {"users": 2, "sessions": 2})
        await self.api("POST", "/broadcast", {"text": "you", "to": "bob"}, expect=200)
        await self.api("POST", "/broadcast", {"text": "x", "to": "nobody"}, expect=404)
        await self.api("POST", "/broadcast", {"text": ""}, expect=400, conforms=False)
        await self.api("POST", "/broadcast", {"to": "bob"}, expect=400, conforms=False)
        self.assertAllStatusesSeen(("POST", "/instant-message"), ("POST", "/broadcast"))


class MotdEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_the_message_of_the_day(self) -> None:
        await self.start()
        self.assertEqual(await self.api("GET", "/motd", expect=200), {"text": ""})
        await self.api("PUT", "/motd", {"text": "Welcome"}, expect=204, conforms=True)
        self.assertEqual(await self.api("GET", "/motd", expect=200), {"text": "Welcome"})
        await self.api("PUT", "/motd", {"text": "é" * 513}, expect=400, conforms=True)
        await self.api("PUT", "/motd", {"text": 5}, expect=400, conforms=False)
        await self.api("PUT", "/motd", {}, expect=400, conforms=False)
        await self.api("PUT", "/motd", {"text": "", "to": "bob"}, expect=400, conforms=False)
        await self.api("PUT", "/motd", {"text": ""}, expect=204)
        self.assertEqual(await self.api("GET", "/motd", expect=200), {"text": ""})
        self.assertAllStatusesSeen(("GET", "/motd"), ("PUT", "/motd"))


class ServerEndpointTests(OpenApiTestCase):
    @deferred_test
    async def test_version_stats_metrics_and_this_document(self) -> None:
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        await server.bucp("Bob", "wrong")
        await self.api("GET", "/version", expect=200)
        stats = await self.api("GET", "/stats", expect=200)
        self.assertEqual(
            (stats["sessions_per_user"], stats["refusals"]["login bad_password"]), ({"1": 1}, 1)
        )
        if ("GET", "/metrics") in operations():
            self.assertIn("aimserver_sessions 1.0", await self.api("GET", "/metrics", expect=200))
        history = await self.api("GET", "/stats/history", expect=200)
        self.assertEqual(history["samples"][-1][history["fields"].index("sessions")], 1)
        self.assertIn('<script src="/status.js">', await self.api("GET", "/status", expect=200))
        self.assertIn("/stats/history", await self.api("GET", "/status.js", expect=200))
        served = await self.api("GET", "/openapi.json", expect=200)
        self.assertEqual(served, DOCUMENT)
        self.assertAllStatusesSeen(
            *(
                key
                for key in operations()
                if key[1] in ("/version", "/stats", "/metrics", "/stats/history", "/status")
            )
        )
        self.assertAllStatusesSeen(("GET", "/openapi.json"))

    @deferred_test
    async def test_other_paths_and_methods(self) -> None:
        """A path not documented is 404 and a method a path does not list is
        405, each with the document's error response."""
        await self.start()
        components = DOCUMENT["components"]["responses"]
        status, answer, kind = await self.call("GET", "/no/such/endpoint")
        self.assertEqual(status, 404)
        self.check_content(components["NoSuchEndpoint"], status, answer, kind, "404")
        for template, item in DOCUMENT["paths"].items():
            listed = {m.upper() for m in HTTP_METHODS if m in item}
            for method in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - listed):
                status, answer, kind = await self.call(method, sample_path(template))
                self.assertEqual(status, 405, (method, template))
                self.check_content(components["MethodNotAllowed"], status, answer, kind, "405")
                self.assertEqual(answer["error_type"], "method_not_allowed")

    @deferred_test
    async def test_an_oversize_body_is_refused_by_every_operation(self) -> None:
        await self.start()
        for method, template in operations():
            params = {name: "1" for name in template_names(template)}
            answer = await self.api(method, template, params=params, raw=OVERSIZE, expect=413)
            self.assertEqual(answer["error_type"], "too_large")


class TokenTests(OpenApiTestCase):
    token = TOKEN

    @deferred_test
    async def test_every_operation_needs_the_token_when_one_is_set(self) -> None:
        """All but the public ones (the status page's HTML and script,
        ``security: [{}]``), which hold no data and answer anyone."""
        await self.start(**{"api.token": TOKEN})
        public = []
        for (method, template), op in operations().items():
            params = {name: "1" for name in template_names(template)}
            for wrong in ("", "x" * len(TOKEN)):
                if is_public(op):
                    await self.api(method, template, params=params, token=wrong, expect=200)
                    public.append(template)
                    continue
                answer = await self.api(method, template, params=params, token=wrong, expect=401)
                self.assertEqual(answer["error_type"], "unauthorized")
        self.assertEqual(sorted(set(public)), ["/status", "/status.js"])
        await self.api("GET", "/version", expect=200)
        # Without the token an unknown path is 401 too: nothing says what exists.
        status, answer, _ = await self.call("GET", "/no/such/path", token="")
        self.assertEqual((status, answer["error_type"]), (401, "unauthorized"))


class UserDataEndpointTests(OpenApiTestCase):
    """The Go server's feedbag and BART read endpoints, over data a real
    client stored: Alice's buddy list (13,08) and icon (10,02 upload)."""

    @deferred_test
    async def test_buddy_list_icon_and_bart_items(self) -> None:
        server = await self.start()
        alice = await server.session("Alice")
        self.addCleanup(alice.close)
        await alice.request(0x13, 0x04, b"", 0x06)
        alice.flap.send_snac(0x13, 0x07, b"", alice.next_id())
        # Two groups, the second shown first; in "Buddies", Carol before Bob.
        root = WireFeedbagItem(b"", 0, 0, 1, Tlv(0x00C8, b"\x0b\x00\x0a\x1e").pack())
        buddies = WireFeedbagItem(b"Buddies", 0x0A1E, 0, 1, Tlv(0x00C8, b"\x00\x07\x12\x34").pack())
        carol = WireFeedbagItem(b"Carol", 0x0A1E, 0x0007, 0)
        family = WireFeedbagItem(b"Family", 0x0B00, 0, 1)
        items = root.pack() + buddies.pack() + BOB.pack() + carol.pack() + family.pack()
        _, status = await alice.request(0x13, 0x08, items + ICON_ITEM.pack(), 0x0E)
        self.assertEqual(status, b"\x00\x00" * 6)

        await self.api("GET", "/user/{screenname}/icon", params={"screenname": "alice"}, expect=404)
        bart = await bart_connection(alice)
        self.addCleanup(bart.close)
        _, body = await bart.request(0x10, 0x02, Upload(1, ICON).pack(), 0x03)
        self.assertEqual(UploadReply.unpack(body).code, 0)

        groups = await self.api(
            "GET", "/feedbag/{screen_name}/group", params={"screen_name": "A lice"}, expect=200
        )
        self.assertEqual(
            groups,
            [
                {"group_id": 0x0B00, "group_name": "Family", "buddies": []},
                {
                    "group_id": 0x0A1E,
                    "group_name": "Buddies",
                    "buddies": [
                        {"name": "Carol", "item_id": 0x0007},
                        {"name": "Bob", "item_id": 0x1234},
                    ],
                },
            ],
        )
        icon = await self.api(
            "GET", "/user/{screenname}/icon", params={"screenname": "alice"}, expect=200
        )
        self.assertEqual(icon, ICON)
        item = await self.api("GET", "/bart/{hash}", params={"hash": MD5.hex()}, expect=200)
        self.assertEqual(item, ICON)
        # Uploaded bytes are data, never a page that could run in the API's origin.
        for path in ("/user/alice/icon", f"/bart/{MD5.hex()}"):
            response = await Agent(reactor).request(b"GET", (server.api_url + path).encode())
            await readBody(response)
            self.assertEqual(
                response.headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"]
            )
            self.assertIn(b"sandbox", response.headers.getRawHeaders(b"content-security-policy")[0])
        listed = await self.api("GET", "/bart", query="type=1", expect=200)
        self.assertEqual(listed, [{"hash": MD5.hex(), "type": 1}])
        self.assertEqual(await self.api("GET", "/bart", query="type=0", expect=200), [])
        # A small icon (type 0) is listed under its own type.
        small = b"GIF89a\x10\x00\x10\x00small"
        _, body = await bart.request(0x10, 0x02, Upload(0, small).pack(), 0x03)
        self.assertEqual(UploadReply.unpack(body).code, 0)
        small_hash = hashlib.md5(small).hexdigest()
        listed = await self.api("GET", "/bart", query="type=0", expect=200)
        self.assertEqual(listed, [{"hash": small_hash, "type": 0}])

        # Refusals: unknown users, empty lists, bad hashes and types get the
        # Go server's statuses and messages, as JSON errors.
        for name in ("Bob", "nobody"):
            answer = await self.api(
                "GET", "/feedbag/{screen_name}/group", params={"screen_name": name}, expect=404
            )
            self.assertEqual(answer["message"], "feedbag not found")
        for name, message in (("nobody", "user not found"), ("Bob", "icon not found")):
            answer = await self.api(
                "GET", "/user/{screenname}/icon", params={"screenname": name}, expect=404
            )
            self.assertEqual(answer["message"], message)
        for digest, status in (("zz", 400), ("", 400), ("abc", 400), ("00" * 16, 404)):
            if digest:
                await self.api("GET", "/bart/{hash}", params={"hash": digest}, expect=status)
        for query, message in (
            ("", "type query parameter is required"),
            ("type=", "type query parameter is required"),
            ("type=x", "invalid type ID"),
            ("type=-1", "invalid type ID"),
            ("type=65536", "invalid type ID"),
        ):
            answer = await self.api("GET", "/bart", query=query, expect=400)
            self.assertEqual(answer["message"], message)
        self.assertAllStatusesSeen(
            ("GET", "/feedbag/{screen_name}/group"),
            ("GET", "/user/{screenname}/icon"),
            ("GET", "/bart"),
            ("GET", "/bart/{hash}"),
        )
