"""Coverage-guided fuzzing of every decoder and of whole connections
(``python -m bench.fuzz --list``; bench/README.md, "Fuzzing").

``TARGETS`` maps a name to a ``Target``: a plain ``def run(data: bytes) ->
None`` that raises only for a real bug, its seeds (valid inputs built with the
project's own encoders) and libFuzzer's ``-max_len`` for it. The targets
import aimserver, so this module imports them only when asked
(``load_targets()``): the driver must start atheris's instrumentation first.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.fuzz.targets import Target

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "fuzz_corpus")
CRASHES = os.path.join(os.path.dirname(HERE), "fuzz_crashes")
WORK = os.path.join(os.path.dirname(HERE), "fuzz_work")

#: Target names, in the order the table lists them.
NAMES = (
    "flap",
    "snac",
    "tlv",
    "userinfo",
    "foodgroups",
    "cookie",
    "ws_frames",
    "web_messages",
    "api_json",
    "config",
    "bos_stream",
    "auth_stream",
    "chat_stream",
    "ws_stream",
    "service_stream",
    "web_http",
    "api_http",
)


def load_targets() -> dict[str, Target]:
    from bench.fuzz import http_streams, streams
    from bench.fuzz import targets as t

    table = [
        t.Target("flap", t.flap, t.flap_seeds, 512, "FLAP frame, header, channel-1 payload"),
        t.Target("snac", t.snac, t.snac_seeds, 512, "SNAC header (with the 0x8000 prefix)"),
        t.Target("tlv", t.tlv, t.tlv_seeds, 1024, "TLV list, block, L-block, typed lookups"),
        t.Target("userinfo", t.userinfo, t.userinfo_seeds, 1024, "user-info block(s)"),
        t.Target(
            "foodgroups",
            t.foodgroups,
            t.foodgroups_seeds,
            1024,
            f"{len(t.FOOD_GROUP_PARSERS)} request/reply parsers, first byte picks",
        ),
        t.Target("cookie", t.cookie, t.cookie_seeds, 300, "login cookie reader (MAC made valid)"),
        t.Target("ws_frames", t.ws_frames, t.ws_frames_seeds, 2048, "WebSocket frame reader"),
        t.Target("web_messages", t.web_messages, t.web_messages_seeds, 1024, "browser JSON"),
        t.Target("api_json", t.api_json, t.api_json_seeds, 1024, "management API JSON bodies"),
        t.Target("config", t.config, t.config_seeds, 1024, "INI reader (load_config)"),
        t.Target(
            "bos_stream",
            streams.bos_stream,
            streams.bos_stream_seeds,
            4096,
            "hostile BOS connection (raw or signed on)",
        ),
        t.Target(
            "auth_stream",
            streams.auth_stream,
            streams.auth_stream_seeds,
            2048,
            "hostile login connection (ch. 1, BUCP)",
        ),
        t.Target(
            "chat_stream",
            streams.chat_stream,
            streams.chat_stream_seeds,
            4096,
            "hostile chat connection, in a bystander's room",
        ),
        t.Target(
            "ws_stream",
            streams.ws_stream,
            streams.ws_stream_seeds,
            4096,
            "hostile browser WebSocket (after the upgrade)",
        ),
        t.Target(
            "service_stream",
            streams.service_stream,
            streams.service_stream_seeds,
            4096,
            "hostile 01,04 service connection (alert, admin, ODir, BART, ChatNav)",
        ),
        t.Target(
            "web_http",
            http_streams.web_http,
            http_streams.web_http_seeds,
            4096,
            "hostile HTTP on the web listener (files, /web/sessions, /ws), 1-4 connections",
        ),
        t.Target(
            "api_http",
            http_streams.api_http,
            http_streams.api_http_seeds,
            4096,
            "hostile HTTP on the management API, 1-4 connections, store checked",
        ),
    ]
    assert tuple(target.name for target in table) == NAMES
    return {target.name: target for target in table}


def corpus_inputs(name: str) -> list[bytes]:
    """The committed corpus of ``name`` (bench/fuzz_corpus/NAME/*)."""
    directory = os.path.join(CORPUS, name)
    if not os.path.isdir(directory):
        return []
    inputs = []
    for entry in sorted(os.listdir(directory)):
        with open(os.path.join(directory, entry), "rb") as f:
            inputs.append(f.read())
    return inputs
